//! A cron trigger's table, checked: `{ type = "cron", schedule = "0 3 * * *", timezone =
//! "Europe/Berlin", overlap = "skip", catch_up = "none", path = "/" }` (`type` is removed by
//! the control plane before the trigger sees the table).

use jiff::tz::TimeZone;
use serde_json::Value;
use wedge_host::{FunctionKind, FunctionSpec, TriggerConfig, TriggerConfigError};

use crate::schedule::Schedule;

const KEYS: [&str; 5] = ["schedule", "timezone", "overlap", "catch_up", "path"];

/// Longest `path` a firing may carry (a request line must stay small).
const MAX_PATH: usize = 2048;

/// What a firing does while the previous firing of the same trigger still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// It is skipped (counted in `wedge_cron_skipped_total`, logged).
    Skip,
    /// It runs when the previous one ends; at most one waits, further ones are skipped.
    Queue,
}

/// What happens to firings missed while the node was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// They are dropped.
    None,
    /// The last one runs once at start-up (the last firing is kept in the data dir).
    Last,
}

/// An IANA time zone, with the name it was given by.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// One cron trigger of a function, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CronConfig {
    pub schedule: Schedule,
    pub zone: Zone,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// The path and query each firing's POST is sent to (the function sees it whole).
    pub path: String,
}

impl CronConfig {
    /// Checks one cron table of `function`; every problem names its key, why, and the fix.
    pub fn parse(
        function: &FunctionSpec,
        config: &TriggerConfig,
    ) -> Result<CronConfig, TriggerConfigError> {
        if function.kind == Some(FunctionKind::Reactor) {
            return Err(not_for_reactors(&function.name));
        }
        if let Some(key) = config.keys().find(|key| !KEYS.contains(&key.as_str())) {
            let hint = match closest(key, KEYS.iter().copied()) {
                Some(close) => format!(" (did you mean `{close}`?)"),
                None => String::new(),
            };
            return Err(TriggerConfigError::new(
                key.as_str(),
                format!(
                    "not a key of a cron trigger{hint}; its keys are schedule, timezone, overlap, catch_up and path"
                ),
            ));
        }
        let schedule = match config.get("schedule") {
            None => {
                return Err(TriggerConfigError::new(
                    "schedule",
                    "a cron trigger needs a schedule: write e.g. schedule = \"0 3 * * *\" (03:00 every day) or \"@hourly\"",
                ));
            }
            Some(value) => {
                let text = string(value, "schedule", "\"0 3 * * *\"")?;
                Schedule::parse(text).map_err(|error| {
                    TriggerConfigError::new("schedule", format!("`{text}`: {error}"))
                })?
            }
        };
        let zone = match config.get("timezone") {
            None => Zone {
                name: "UTC".into(),
                tz: TimeZone::UTC,
            },
            Some(value) => zone(string(value, "timezone", "\"Europe/Berlin\"")?)?,
        };
        let overlap = choice(
            config,
            "overlap",
            Overlap::Skip,
            &[("skip", Overlap::Skip), ("queue", Overlap::Queue)],
            "an overlap policy: write \"skip\" (a firing while the previous one runs is skipped) or \"queue\" (it runs when the previous one ends)",
        )?;
        let catch_up = choice(
            config,
            "catch_up",
            CatchUp::None,
            &[("none", CatchUp::None), ("last", CatchUp::Last)],
            "a catch-up policy: write \"none\" (firings missed while the node was down are dropped) or \"last\" (the last one runs once at start-up)",
        )?;
        let path = match config.get("path") {
            None => function.route().unwrap_or("/").to_string(),
            Some(value) => path(string(value, "path", "\"/jobs/nightly\"")?)?,
        };
        Ok(CronConfig {
            schedule,
            zone,
            overlap,
            catch_up,
            path,
        })
    }
}

/// The refusal of a cron trigger on a reactor module.
pub(crate) fn not_for_reactors(function: &str) -> TriggerConfigError {
    TriggerConfigError::new(
        "type",
        format!(
            "function `{function}` is a reactor module (a core module without `_start`), which answers no HTTP request, and a cron firing is an HTTP POST: make it an `http` component or a `wagi` command, or call its exports from a queue trigger's `invoke`"
        ),
    )
}

/// A key that takes one of a few words; `what` says what it is and which words, for the
/// error.
fn choice<T: Copy>(
    config: &TriggerConfig,
    key: &str,
    default: T,
    words: &[(&str, T)],
    what: &str,
) -> Result<T, TriggerConfigError> {
    let Some(value) = config.get(key) else {
        return Ok(default);
    };
    let text = string(value, key, &format!("\"{}\"", words[0].0))?;
    words
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, choice)| *choice)
        .ok_or_else(|| TriggerConfigError::new(key, format!("`{text}` is not {what}")))
}

fn string<'a>(value: &'a Value, key: &str, example: &str) -> Result<&'a str, TriggerConfigError> {
    value.as_str().ok_or_else(|| {
        TriggerConfigError::new(
            key,
            format!("must be a string such as {example}, not {value}"),
        )
    })
}

/// An IANA time zone by name, from the database compiled into wedge.
fn zone(name: &str) -> Result<Zone, TriggerConfigError> {
    match jiff::tz::db().get(name) {
        Ok(tz) => Ok(Zone {
            name: name.to_string(),
            tz,
        }),
        Err(_) => {
            let available: Vec<String> = jiff::tz::db()
                .available()
                .map(|name| name.as_str().to_string())
                .collect();
            // A city alone (`Berlin`) names its zone; otherwise the nearest spelling.
            let by_city = available.iter().find(|zone| {
                zone.rsplit('/')
                    .next()
                    .is_some_and(|city| city.eq_ignore_ascii_case(&name.replace(' ', "_")))
            });
            let close = by_city
                .map(String::as_str)
                .or_else(|| closest(name, available.iter().map(String::as_str)));
            let hint = match close {
                Some(close) => format!("; did you mean \"{close}\"?"),
                None => ".".to_string(),
            };
            Err(TriggerConfigError::new(
                "timezone",
                format!(
                    "`{name}` is not an IANA time zone{hint} Write an Area/City name such as \"Europe/Berlin\" or \"America/New_York\", or \"UTC\" (the default)"
                ),
            ))
        }
    }
}

fn path(text: &str) -> Result<String, TriggerConfigError> {
    let problem = if !text.starts_with('/') {
        Some("must start with `/`: it is the path (and query) of the request each firing sends, e.g. \"/jobs/nightly?full=1\"".to_string())
    } else if text.len() > MAX_PATH {
        Some(format!(
            "is {} bytes long; a path has at most {MAX_PATH}",
            text.len()
        ))
    } else if text.contains('#') {
        Some("must not contain a fragment (`#...`): it is never sent".to_string())
    } else if text.parse::<http::uri::PathAndQuery>().is_err() {
        Some(format!(
            "`{text}` is not a valid request path: spaces and other special characters must be percent-encoded (%20)"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(TriggerConfigError::new("path", problem)),
        None => Ok(text.to_string()),
    }
}

/// The candidate nearest to `word` by edit distance (ignoring case), if it is near enough
/// to be a typo of it.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let allowed = (word.chars().count() / 3).clamp(1, 4);
    candidates
        .map(|candidate| {
            (
                edit_distance(&word, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(route: Option<&str>, kind: Option<FunctionKind>) -> FunctionSpec {
        FunctionSpec {
            name: "job".into(),
            kind,
            triggers: route
                .map(|route| wedge_host::TriggerSpec::Http {
                    route: route.into(),
                })
                .into_iter()
                .collect(),
            timeout: std::time::Duration::from_secs(1),
            max_memory: 1 << 20,
            max_concurrency: None,
            reuse: None,
            scope: wedge_capabilities::names::Scope::new("app").expect("scope"),
            grants: Default::default(),
        }
    }

    fn table(json: &str) -> TriggerConfig {
        serde_json::from_str(json).expect("JSON table")
    }

    fn refused(json: &str) -> TriggerConfigError {
        CronConfig::parse(&spec(None, None), &table(json)).expect_err(json)
    }

    #[test]
    fn defaults_are_utc_skip_no_catch_up_and_the_route() {
        let config = CronConfig::parse(
            &spec(Some("/jobs"), None),
            &table(r#"{"schedule": "@hourly"}"#),
        )
        .unwrap();
        assert_eq!(config.schedule.as_str(), "@hourly");
        assert_eq!(config.zone.name, "UTC");
        assert_eq!(config.overlap, Overlap::Skip);
        assert_eq!(config.catch_up, CatchUp::None);
        assert_eq!(config.path, "/jobs");
        let bare = CronConfig::parse(&spec(None, None), &table(r#"{"schedule": "@hourly"}"#));
        assert_eq!(bare.unwrap().path, "/");
    }

    #[test]
    fn every_key_is_read() {
        let config = CronConfig::parse(
            &spec(None, None),
            &table(
                r#"{"schedule": "0 3 * * *", "timezone": "Europe/Berlin", "overlap": "queue",
                    "catch_up": "last", "path": "/kv-incr?store=s&key=k"}"#,
            ),
        )
        .unwrap();
        assert_eq!(config.zone.name, "Europe/Berlin");
        assert_eq!(config.overlap, Overlap::Queue);
        assert_eq!(config.catch_up, CatchUp::Last);
        assert_eq!(config.path, "/kv-incr?store=s&key=k");
    }

    #[test]
    fn each_bad_key_is_named_with_the_reason_and_the_fix() {
        let error = refused(r#"{"schedule": "@daily", "timezon": "UTC"}"#);
        assert_eq!(error.key, "timezon");
        assert!(
            error.problem.contains("did you mean `timezone`?"),
            "{error}"
        );
        let error = refused("{}");
        assert_eq!(error.key, "schedule");
        assert!(error.problem.contains("needs a schedule"), "{error}");
        let error = refused(r#"{"schedule": 5}"#);
        assert_eq!(
            error.to_string(),
            "key `schedule`: must be a string such as \"0 3 * * *\", not 5"
        );
        let error = refused(r#"{"schedule": "0 24 * * *"}"#);
        assert_eq!(
            error.to_string(),
            "key `schedule`: `0 24 * * *`: the hour field `24` (field 2 of 5): 24 is out of range: hour values go from 0 to 23"
        );
        let error = refused(r#"{"schedule": "@daily", "timezone": "Europe/Berln"}"#);
        assert_eq!(
            error.to_string(),
            "key `timezone`: `Europe/Berln` is not an IANA time zone; did you mean \"Europe/Berlin\"? Write an Area/City name such as \"Europe/Berlin\" or \"America/New_York\", or \"UTC\" (the default)"
        );
        let error = refused(r#"{"schedule": "@daily", "timezone": "new york"}"#);
        assert!(
            error.problem.contains("did you mean \"America/New_York\"?"),
            "{error}"
        );
        let error = refused(r#"{"schedule": "@daily", "timezone": "Mars/Olympus"}"#);
        assert!(
            error
                .problem
                .starts_with("`Mars/Olympus` is not an IANA time zone. Write"),
            "{error}"
        );
        let error = refused(r#"{"schedule": "@daily", "overlap": "allow"}"#);
        assert_eq!(error.key, "overlap");
        assert!(error.problem.contains("\"skip\"") && error.problem.contains("\"queue\""));
        let error = refused(r#"{"schedule": "@daily", "catch_up": true}"#);
        assert_eq!(error.key, "catch_up");
        assert!(error.problem.contains("not true"), "{error}");
        let error = refused(r#"{"schedule": "@daily", "catch_up": "all"}"#);
        assert!(error.problem.contains("\"none\"") && error.problem.contains("\"last\""));
        for bad in ["jobs", "/a b", "/a#b"] {
            let error = refused(&format!(r#"{{"schedule": "@daily", "path": "{bad}"}}"#));
            assert_eq!(error.key, "path", "{bad}");
        }
    }

    #[test]
    fn zone_names_are_iana_names_in_any_case() {
        let config = CronConfig::parse(
            &spec(None, None),
            &table(r#"{"schedule": "@daily", "timezone": "america/new_york"}"#),
        )
        .unwrap();
        assert_eq!(
            config.zone.tz.iana_name(),
            Some("America/New_York"),
            "the bundled database answers case-insensitively"
        );
    }

    #[test]
    fn a_reactor_is_no_cron_target() {
        let error = CronConfig::parse(
            &spec(None, Some(FunctionKind::Reactor)),
            &table(r#"{"schedule": "@daily"}"#),
        )
        .expect_err("reactor");
        assert_eq!(error.key, "type");
        assert!(error.problem.contains("reactor module"), "{error}");
    }
}
