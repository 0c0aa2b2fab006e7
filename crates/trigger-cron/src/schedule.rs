//! Cron schedules: the parser, and the next firing time in a time zone.
//!
//! A schedule is 5 fields (`minute hour day-of-month month day-of-week`) or 6 with seconds
//! first, or a nickname (`@daily`, ...). Each field is a list of items separated by `,`; an
//! item is `*`, a value, a range `a-b`, and any of those with a step `/n`; `a/n` means `a-max/n`.
//! Months and days of the week may be names (`JAN`, `mon`); day of the week 7 is Sunday, like 0.
//! When both day fields are restricted (neither starts with `*`), a day matches if EITHER
//! matches, as in Vixie cron (`0 0 1,15 * MON`: the 1st, the 15th and every Monday); otherwise
//! both must.
//!
//! Firing times are computed on the civil (wall-clock) time of the schedule's time zone, and
//! daylight-saving changes follow cronie's rules (docs/triggers.md, "Daylight saving time"):
//!
//! - a schedule whose minute or hour field starts with `*` follows the clock as it runs (a
//!   *clock-rhythm* schedule: `*/5 * * * *`, `0 * * * *`): wall-clock times skipped in a
//!   spring-forward gap do not fire, and times that occur twice in an autumn overlap fire both
//!   times, so it keeps its rhythm in elapsed time;
//! - any other schedule names times of day (`30 2 * * *`): one in a gap fires once at the end
//!   of the gap (the first valid instant; several such times merge into that one firing), one
//!   in an overlap fires once, at its first occurrence.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// How far ahead a next firing is looked for: the sparsest valid schedule, February 29,
/// fires at most 8 years apart (2096, 2104).
const SEARCH_YEARS: i32 = 10;

/// The six fields, in the order of a 6-field schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The values it takes, as written (day of the week 7 is Sunday).
    fn range(self) -> (u8, u8) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            Field::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }

    /// The value of a name (`JAN` = 1, `SUN` = 0).
    fn value_of_name(self, name: &str) -> Option<u8> {
        let first = match self {
            Field::Month => 1,
            _ => 0,
        };
        self.names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i as u8 + first)
    }
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "it is empty: write 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"), 6 with seconds first, or a nickname such as \"@daily\""
    )]
    Empty,
    #[error(
        "it has {count} field{}; a schedule has 5 (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or 6 with seconds first (\"*/10 * * * * *\")",
        if *count == 1 { "" } else { "s" }
    )]
    FieldCount { count: usize },
    #[error("{0}")]
    Nickname(String),
    #[error("the {} field `{text}` (field {position} of {count}): {reason}", field.name())]
    Field {
        field: Field,
        position: usize,
        count: usize,
        text: String,
        reason: String,
    },
    #[error("it never fires: {0}")]
    Never(String),
}

/// A parsed schedule. Each field is a set of values, one bit per value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1..=31.
    days_of_month: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, Sunday = 0 (7 is folded into 0).
    days_of_week: u64,
    /// The day field starts with `*` (or is `?`): Vixie cron's DOM_STAR / DOW_STAR.
    day_of_month_star: bool,
    day_of_week_star: bool,
    /// The minute or hour field starts with `*`: the schedule follows the clock through
    /// daylight-saving changes instead of naming times of day (cronie's MIN_STAR / HR_STAR).
    clock_rhythm: bool,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        Schedule::parse(text)
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = match trimmed.strip_prefix('@') {
            Some(nickname) => expand_nickname(nickname)?,
            None => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            count => return Err(ScheduleError::FieldCount { count }),
        };
        let count = fields.len();
        let offset = count - 5;
        let parse = |field: Field, text: &str, position: usize| {
            parse_field(field, text).map_err(|reason| ScheduleError::Field {
                field,
                position,
                count,
                text: text.to_string(),
                reason,
            })
        };
        let seconds = parse(Field::Second, second, 1)?;
        let minutes = parse(Field::Minute, rest[0], offset + 1)?;
        let hours = parse(Field::Hour, rest[1], offset + 2)?;
        let days_of_month = parse(Field::DayOfMonth, rest[2], offset + 3)?;
        let months = parse(Field::Month, rest[3], offset + 4)?;
        let mut days_of_week = parse(Field::DayOfWeek, rest[4], offset + 5)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        let starred = |text: &str| text.starts_with('*') || text == "?";
        let schedule = Schedule {
            text: trimmed.to_string(),
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_of_month_star: starred(rest[2]),
            day_of_week_star: starred(rest[4]),
            clock_rhythm: rest[0].starts_with('*') || rest[1].starts_with('*'),
        };
        schedule.check_days_exist()?;
        Ok(schedule)
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Refuses a schedule whose days never occur (`0 0 30 2 *`): it would never fire.
    fn check_days_exist(&self) -> Result<(), ScheduleError> {
        // With the day of the week in play, some day of every month matches.
        if !self.day_of_week_star {
            return Ok(());
        }
        let first_day = self.days_of_month.trailing_zeros() as u8;
        let possible = (1..=12u8)
            .filter(|month| self.months & (1 << month) != 0)
            .any(|month| first_day <= longest_month(month));
        if possible {
            return Ok(());
        }
        let months: Vec<&str> = (1..=12u8)
            .filter(|month| self.months & (1 << month) != 0)
            .map(|month| Field::Month.names()[usize::from(month - 1)])
            .collect();
        Err(ScheduleError::Never(format!(
            "no day {first_day} or later in {}; choose a day that exists (February has 29 in leap years)",
            months.join(", ")
        )))
    }

    /// The first firing strictly after `after`, in time zone `tz` (whole seconds), or `None`
    /// if there is none in the next ten years.
    ///
    /// The time line is walked in spans of one UTC offset (between two transitions of the
    /// zone); within a span, wall-clock time runs evenly, so the first matching wall-clock
    /// time in the span's range is the answer. Which wall-clock range a span covers is what
    /// the daylight-saving rules decide (see the module's documentation): a clock-rhythm
    /// schedule searches exactly the span's own range, a time-of-day one starts where the
    /// previous span's range ended, so that times in a gap fire at the span's start and
    /// times repeated by an overlap are not searched again.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        let mut offset = tz.to_offset(start);
        let mut span_start = start;
        let mut lower = Civil::from(offset.to_datetime(start));
        if !self.clock_rhythm {
            // Inside the second pass of an overlap, its times have fired in the first.
            let just_after = Timestamp::from_second(start.as_second() + 1).ok()?;
            if let Some(previous) = tz.preceding(just_after).next() {
                let transition = previous.timestamp();
                let before = Timestamp::from_second(transition.as_second() - 1).ok()?;
                let before = tz.to_offset(before);
                lower = lower.max(Civil::from(before.to_datetime(transition)));
            }
        }
        let limit = Civil::midnight(lower.year + SEARCH_YEARS, 1, 1);
        loop {
            let span_end = tz.following(span_start).next();
            let upper = match &span_end {
                Some(end) => Civil::from(offset.to_datetime(end.timestamp())).min(limit),
                None => limit,
            };
            if let Some(found) = self.next_match(lower, upper) {
                let at = offset.to_timestamp(found.to_jiff()?).ok()?;
                // A time-of-day in the gap before this span fires as the span starts.
                return Some(at.max(span_start));
            }
            let end = span_end?;
            if upper >= limit {
                return None;
            }
            let next_offset = end.offset();
            lower = if self.clock_rhythm {
                Civil::from(next_offset.to_datetime(end.timestamp()))
            } else {
                upper
            };
            offset = next_offset;
            span_start = end.timestamp();
        }
    }

    /// The latest firing in `(since, until]`, if any: the one a node that was down from
    /// `since` to `until` missed last.
    pub fn latest_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        let first = self.next_after(since, tz)?;
        if first > until {
            return None;
        }
        // Look back from `until` in growing windows, so that a long downtime of a frequent
        // schedule does not walk through every missed firing.
        const WINDOWS: [i64; 5] = [60, 3_600, 86_400, 32 * 86_400, 367 * 86_400];
        let windows = WINDOWS
            .iter()
            .map(|seconds| until.as_second().saturating_sub(*seconds))
            .filter(|start| *start > since.as_second())
            .filter_map(|start| Timestamp::from_second(start).ok())
            .chain(std::iter::once(since));
        for window_start in windows {
            let Some(mut latest) = self.next_after(window_start, tz).filter(|t| *t <= until) else {
                continue;
            };
            while let Some(next) = self.next_after(latest, tz).filter(|t| *t <= until) {
                latest = next;
            }
            return Some(latest);
        }
        Some(first)
    }

    /// The first civil time at or after `from` and before `until` that every field matches.
    fn next_match(&self, from: Civil, until: Civil) -> Option<Civil> {
        let mut t = from;
        loop {
            if t >= until {
                return None;
            }
            if t.day > days_in_month(t.year, t.month) {
                t = t.first_of_next_month();
                continue;
            }
            if self.months & (1 << t.month) == 0 {
                t = match next_bit(self.months, t.month + 1, 12) {
                    Some(month) => Civil::midnight(t.year, month, 1),
                    None => Civil::midnight(t.year + 1, lowest_bit(self.months), 1),
                };
                continue;
            }
            if !self.day_matches(t.year, t.month, t.day) {
                t = t.next_day();
                continue;
            }
            match next_bit(self.hours, t.hour, 23) {
                None => {
                    t = t.next_day();
                    continue;
                }
                Some(hour) if hour != t.hour => {
                    t.hour = hour;
                    t.minute = 0;
                    t.second = 0;
                }
                Some(_) => {}
            }
            match next_bit(self.minutes, t.minute, 59) {
                None => {
                    t = t.next_hour();
                    continue;
                }
                Some(minute) if minute != t.minute => {
                    t.minute = minute;
                    t.second = 0;
                }
                Some(_) => {}
            }
            match next_bit(self.seconds, t.second, 59) {
                None => {
                    t = t.next_minute();
                    continue;
                }
                Some(second) => t.second = second,
            }
            return (t < until).then_some(t);
        }
    }

    fn day_matches(&self, year: i32, month: u8, day: u8) -> bool {
        let by_month = self.days_of_month & (1 << day) != 0;
        let by_week = self.days_of_week & (1 << weekday(year, month, day)) != 0;
        if self.day_of_month_star || self.day_of_week_star {
            by_month && by_week
        } else {
            by_month || by_week
        }
    }
}

fn expand_nickname(nickname: &str) -> Result<&'static str, ScheduleError> {
    let expanded = match nickname.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        "reboot" => {
            return Err(ScheduleError::Nickname(
                "`@reboot` is not a schedule wedge runs: a function runs on its triggers, not at start-up; use `catch_up = \"last\"` to run a job missed while the node was down".into(),
            ));
        }
        word if word.starts_with("every") => {
            return Err(ScheduleError::Nickname(
                "`@every` is not supported: write a step in the seconds or minutes field, e.g. \"*/30 * * * * *\" (every 30 seconds) or \"*/5 * * * *\" (every 5 minutes)".into(),
            ));
        }
        _ => {
            return Err(ScheduleError::Nickname(format!(
                "`@{nickname}` is not a nickname; write one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, or five fields"
            )));
        }
    };
    Ok(expanded)
}

/// One field's set of values, or why it is not one.
fn parse_field(field: Field, text: &str) -> Result<u64, String> {
    let (low, high) = field.range();
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("an empty item in the list: items are separated by single commas".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step, low, high)?)),
            None => (item, None),
        };
        let (first, last) = if range == "*" || (range == "?" && is_day_field(field)) {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(field, a)?, parse_value(field, b)?);
            if a > b {
                return Err(format!(
                    "the range {range} goes backwards: write it from low to high, or as two ranges (e.g. {a}-{high},{low}-{b})"
                ));
            }
            (a, b)
        } else {
            let value = parse_value(field, range)?;
            // `a/n` is `a-max/n`, as most crons read it.
            (value, if step.is_some() { high } else { value })
        };
        let step = step.unwrap_or(1);
        let mut value = first;
        while value <= last {
            set |= 1 << value;
            value = match value.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
    }
    Ok(set)
}

fn is_day_field(field: Field) -> bool {
    matches!(field, Field::DayOfMonth | Field::DayOfWeek)
}

fn parse_step(text: &str, low: u8, high: u8) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(0) => Err("a step of 0: a step is 1 or more (`*/5`: every fifth)".into()),
        Ok(step) if step <= high - low + 1 => Ok(step),
        _ if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() => Err(format!(
            "the step {text} is larger than the field's {} values",
            u16::from(high - low) + 1
        )),
        _ => Err(format!(
            "`{text}` is not a step: after `/` comes a whole number (`*/5`)"
        )),
    }
}

fn parse_value(field: Field, text: &str) -> Result<u8, String> {
    let (low, high) = field.range();
    if text.is_empty() {
        return Err("a range needs a value on both sides of `-`".into());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u8>() {
            Ok(value) if (low..=high).contains(&value) => Ok(value),
            _ => Err(format!(
                "{text} is out of range: {} values go from {low} to {high}{}",
                field.name(),
                if field == Field::DayOfWeek {
                    " (0 and 7 are Sunday)"
                } else {
                    ""
                }
            )),
        };
    }
    if let Some(value) = field.value_of_name(text) {
        return Ok(value);
    }
    if text.contains(['L', 'W', '#']) && is_day_field(field) {
        return Err(format!(
            "`{text}`: the Quartz extensions L, W and # are not supported; list the days instead"
        ));
    }
    let names = field.names();
    Err(if names.is_empty() {
        format!(
            "`{text}` is not a number from {low} to {high}, a range (a-b), a list (a,b) or a step (*/n)"
        )
    } else {
        format!(
            "`{text}` is neither a number from {low} to {high} nor a name ({})",
            names.join(" ")
        )
    })
}

/// The lowest set bit at or above `from` and at most `max`.
fn next_bit(set: u64, from: u8, max: u8) -> Option<u8> {
    if from > max {
        return None;
    }
    let masked = set & (u64::MAX << from);
    let bit = masked.trailing_zeros() as u8;
    (bit <= max).then_some(bit)
}

fn lowest_bit(set: u64) -> u8 {
    set.trailing_zeros() as u8
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn longest_month(month: u8) -> u8 {
    days_in_month(2000, month)
}

/// Day of the week, Sunday = 0 (Sakamoto's method).
fn weekday(year: i32, month: u8, day: u8) -> u8 {
    const OFFSETS: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if month < 3 { year - 1 } else { year };
    let w = y + y.div_euclid(4) - y.div_euclid(100)
        + y.div_euclid(400)
        + OFFSETS[usize::from(month - 1)]
        + i32::from(day);
    w.rem_euclid(7) as u8
}

/// A wall-clock time, compared field by field (year first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Civil {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl From<jiff::civil::DateTime> for Civil {
    fn from(datetime: jiff::civil::DateTime) -> Self {
        Civil {
            year: i32::from(datetime.year()),
            month: datetime.month() as u8,
            day: datetime.day() as u8,
            hour: datetime.hour() as u8,
            minute: datetime.minute() as u8,
            second: datetime.second() as u8,
        }
    }
}

impl Civil {
    fn midnight(year: i32, month: u8, day: u8) -> Self {
        Civil {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    fn to_jiff(self) -> Option<jiff::civil::DateTime> {
        jiff::civil::DateTime::new(
            i16::try_from(self.year).ok()?,
            self.month as i8,
            self.day as i8,
            self.hour as i8,
            self.minute as i8,
            self.second as i8,
            0,
        )
        .ok()
    }

    fn first_of_next_month(self) -> Self {
        if self.month == 12 {
            Civil::midnight(self.year + 1, 1, 1)
        } else {
            Civil::midnight(self.year, self.month + 1, 1)
        }
    }

    /// Midnight of the next day; the day may be past the month's end (`next_match` rolls it).
    fn next_day(self) -> Self {
        Civil::midnight(self.year, self.month, self.day + 1)
    }

    fn next_hour(self) -> Self {
        if self.hour == 23 {
            self.next_day()
        } else {
            Civil {
                hour: self.hour + 1,
                minute: 0,
                second: 0,
                ..self
            }
        }
    }

    fn next_minute(self) -> Self {
        if self.minute == 59 {
            self.next_hour()
        } else {
            Civil {
                minute: self.minute + 1,
                second: 0,
                ..self
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::db().get(name).expect("zone")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    /// The next `n` firings after `from`, as RFC 3339 with the zone's offset.
    fn firings(schedule: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(schedule).expect("schedule");
        let zone = tz(zone);
        let mut after = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(next) = schedule.next_after(after, &zone) else {
                break;
            };
            out.push(next.display_with_offset(zone.to_offset(next)).to_string());
            after = next;
        }
        out
    }

    fn error(schedule: &str) -> String {
        Schedule::parse(schedule).expect_err(schedule).to_string()
    }

    #[test]
    fn five_fields_fire_at_minute_boundaries_in_utc() {
        assert_eq!(
            firings("0 3 * * *", "UTC", "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T03:00:00+00:00", "2026-01-02T03:00:00+00:00"]
        );
        assert_eq!(
            firings("*/20 * * * *", "UTC", "2026-01-01T00:10:30Z", 3),
            [
                "2026-01-01T00:20:00+00:00",
                "2026-01-01T00:40:00+00:00",
                "2026-01-01T01:00:00+00:00"
            ]
        );
    }

    #[test]
    fn six_fields_fire_every_second() {
        assert_eq!(
            firings("* * * * * *", "UTC", "2026-12-31T23:59:58.5Z", 3),
            [
                "2026-12-31T23:59:59+00:00",
                "2027-01-01T00:00:00+00:00",
                "2027-01-01T00:00:01+00:00"
            ]
        );
        assert_eq!(
            firings("15,45 * * * * *", "UTC", "2026-01-01T00:00:15Z", 2),
            ["2026-01-01T00:00:45+00:00", "2026-01-01T00:01:15+00:00"]
        );
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        // Weekdays at 09:30: Friday 2026-01-02, then Monday the 5th.
        assert_eq!(
            firings("30 9 * * MON-FRI", "UTC", "2026-01-02T00:00:00Z", 2),
            ["2026-01-02T09:30:00+00:00", "2026-01-05T09:30:00+00:00"]
        );
        assert_eq!(
            firings("0 0 1 jan,Jul *", "UTC", "2026-02-01T00:00:00Z", 2),
            ["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]
        );
        // `a/n` is `a-max/n`; a stepped range.
        assert_eq!(
            firings("5/20 10-14/2 * * *", "UTC", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-01T10:05:00+00:00",
                "2026-01-01T10:25:00+00:00",
                "2026-01-01T10:45:00+00:00",
                "2026-01-01T12:05:00+00:00"
            ]
        );
    }

    #[test]
    fn day_of_week_seven_is_sunday_and_zero_too() {
        let sunday = ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"];
        for schedule in ["0 0 * * 7", "0 0 * * 0", "0 0 * * SUN", "0 0 * * 6-7"] {
            let got = firings(schedule, "UTC", "2026-01-03T12:00:00Z", 2);
            if schedule == "0 0 * * 6-7" {
                // Saturday the 3rd has passed by noon: Sunday, then Saturday.
                assert_eq!(
                    got,
                    ["2026-01-04T00:00:00+00:00", "2026-01-10T00:00:00+00:00"]
                );
            } else {
                assert_eq!(got, sunday, "{schedule}");
            }
        }
    }

    #[test]
    fn restricted_day_fields_combine_with_or_as_in_vixie_cron() {
        // The 1st and 15th of each month, and every Monday (2026-06-01 is a Monday).
        assert_eq!(
            firings("0 0 1,15 * MON", "UTC", "2026-06-01T00:00:00Z", 4),
            [
                "2026-06-08T00:00:00+00:00",
                "2026-06-15T00:00:00+00:00",
                "2026-06-22T00:00:00+00:00",
                "2026-06-29T00:00:00+00:00"
            ]
        );
        // Friday the 13th, no: with `*` in one day field, both must match, and `*/1`
        // counts as `*` (it starts with `*`), as in Vixie cron.
        assert_eq!(
            firings("0 0 */1 * FRI", "UTC", "2026-01-01T00:00:00Z", 2),
            ["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00"]
        );
        assert_eq!(
            firings("0 0 13 * ?", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-01-13T00:00:00+00:00"]
        );
    }

    #[test]
    fn february_29_fires_in_leap_years_only() {
        assert_eq!(
            firings("0 12 29 2 *", "UTC", "2025-01-01T00:00:00Z", 3),
            [
                "2028-02-29T12:00:00+00:00",
                "2032-02-29T12:00:00+00:00",
                "2036-02-29T12:00:00+00:00"
            ]
        );
        // 2100 is not a leap year: eight years from 2096 to 2104.
        assert_eq!(
            firings("0 0 29 FEB *", "UTC", "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00+00:00"]
        );
        // Every day of February: 2024 has a 29th, 2026 has none.
        assert_eq!(
            firings("0 0 28-31 2 *", "UTC", "2024-02-28T12:00:00Z", 2),
            ["2024-02-29T00:00:00+00:00", "2025-02-28T00:00:00+00:00"]
        );
    }

    #[test]
    fn the_31st_skips_short_months() {
        assert_eq!(
            firings("0 0 31 * *", "UTC", "2026-01-31T12:00:00Z", 3),
            [
                "2026-03-31T00:00:00+00:00",
                "2026-05-31T00:00:00+00:00",
                "2026-07-31T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn nicknames_expand() {
        let cases = [
            ("@yearly", "2027-01-01T00:00:00+00:00"),
            ("@annually", "2027-01-01T00:00:00+00:00"),
            ("@monthly", "2026-07-01T00:00:00+00:00"),
            ("@weekly", "2026-06-21T00:00:00+00:00"),
            ("@daily", "2026-06-18T00:00:00+00:00"),
            ("@midnight", "2026-06-18T00:00:00+00:00"),
            ("@HOURLY", "2026-06-17T13:00:00+00:00"),
        ];
        for (nickname, first) in cases {
            assert_eq!(
                firings(nickname, "UTC", "2026-06-17T12:34:56Z", 1),
                [first],
                "{nickname}"
            );
        }
    }

    #[test]
    fn europe_berlin_spring_forward_fires_a_time_in_the_gap_once_at_the_gap_end() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        // Times in the gap and the gap's end merge into one firing.
        assert_eq!(
            firings("0,30 2,3 * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-30T02:00:00+02:00"
            ]
        );
    }

    #[test]
    fn europe_berlin_spring_forward_clock_rhythm_skips_the_missing_hour() {
        assert_eq!(
            firings("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:15:00Z", 3),
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
        // Hourly stays hourly in elapsed time: 01:30 CET and 03:30 CEST are an hour apart.
        assert_eq!(
            firings("30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 2),
            ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"]
        );
        // Every second across the jump: 01:59:59 CET, then 03:00:00 CEST.
        assert_eq!(
            firings("* * * * * *", "Europe/Berlin", "2026-03-29T00:59:58Z", 2),
            ["2026-03-29T01:59:59+01:00", "2026-03-29T03:00:00+02:00"]
        );
    }

    #[test]
    fn europe_berlin_fall_back_fires_a_time_of_day_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // Starting inside the second pass does not fire it again.
        assert_eq!(
            firings("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T02:30:00+01:00"]
        );
        // A time-of-day schedule with a seconds step fires through the first pass only.
        assert_eq!(
            firings(
                "*/20 59 2 * * *",
                "Europe/Berlin",
                "2026-10-25T00:58:30Z",
                4
            ),
            [
                "2026-10-25T02:59:00+02:00",
                "2026-10-25T02:59:20+02:00",
                "2026-10-25T02:59:40+02:00",
                "2026-10-26T02:59:00+01:00"
            ]
        );
    }

    #[test]
    fn europe_berlin_fall_back_clock_rhythm_fires_in_both_passes() {
        assert_eq!(
            firings("30 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", 3),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:30:00+01:00"
            ]
        );
        assert_eq!(
            firings("* * * * * *", "Europe/Berlin", "2026-10-25T00:59:58Z", 3),
            [
                "2026-10-25T02:59:59+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:00:01+01:00"
            ]
        );
    }

    #[test]
    fn a_clock_rhythm_schedule_fires_in_the_second_pass_after_the_first() {
        // From 02:30 CEST (first pass), the clock goes back at 03:00 CEST to 02:00 CET.
        assert_eq!(
            firings("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", 3),
            [
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        // A time-of-day schedule at the start of the overlap fires once.
        assert_eq!(
            firings("0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"]
        );
    }

    /// The firings of `schedule` from `from` for `hours`, found the slow way: every minute
    /// (or second) of wall-clock time, each resolved by the documented rules.
    fn brute_force(schedule: &str, zone: &str, from: &str, hours: i64) -> Vec<Timestamp> {
        let parsed = Schedule::parse(schedule).unwrap();
        let zone = tz(zone);
        let start = at(from);
        let end = Timestamp::from_second(start.as_second() + hours * 3600).unwrap();
        let step = if parsed.seconds == 1 { 60 } else { 1 };
        let mut civil = zone.to_datetime(start);
        let civil_end = zone
            .to_datetime(end)
            .checked_add(jiff::SignedDuration::from_hours(3))
            .unwrap();
        let mut found = Vec::new();
        while civil < civil_end {
            let c = Civil::from(civil);
            let matches = parsed.seconds & (1 << c.second) != 0
                && parsed.minutes & (1 << c.minute) != 0
                && parsed.hours & (1 << c.hour) != 0
                && parsed.months & (1 << c.month) != 0
                && parsed.day_matches(c.year, c.month, c.day);
            if matches {
                let ambiguous = zone.to_ambiguous_timestamp(civil);
                match ambiguous.offset() {
                    jiff::tz::AmbiguousOffset::Unambiguous { offset } => {
                        found.push(offset.to_timestamp(civil).unwrap())
                    }
                    jiff::tz::AmbiguousOffset::Gap { after, .. } if !parsed.clock_rhythm => {
                        let from = after.to_timestamp(civil).unwrap();
                        found.push(zone.following(from).next().unwrap().timestamp());
                    }
                    jiff::tz::AmbiguousOffset::Gap { .. } => {}
                    jiff::tz::AmbiguousOffset::Fold { before, after } => {
                        found.push(before.to_timestamp(civil).unwrap());
                        if parsed.clock_rhythm {
                            found.push(after.to_timestamp(civil).unwrap());
                        }
                    }
                }
            }
            civil = civil
                .checked_add(jiff::SignedDuration::from_secs(step))
                .unwrap();
        }
        found.sort();
        found.dedup();
        found.retain(|t| *t > start && *t <= end);
        found
    }

    #[test]
    fn next_after_agrees_with_a_brute_force_walk_around_transitions() {
        let schedules = [
            "* * * * *",
            "*/7 * * * *",
            "30 * * * *",
            "0,30 2 * * *",
            "15 1,2,3 * * *",
            "45 2 * * *",
            "0 0,12 * * *",
            "*/10 30 2 * * *",
            "*/15 * * * * *",
        ];
        // Spring forward and fall back in Berlin and New York; Lord Howe moves by 30
        // minutes; Samoa skipped 2011-12-30 entirely; Kolkata never changes.
        let around = [
            ("Europe/Berlin", "2026-03-28T22:00:00Z"),
            ("Europe/Berlin", "2026-10-24T22:00:00Z"),
            ("America/New_York", "2026-03-08T04:00:00Z"),
            ("America/New_York", "2026-11-01T03:00:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T13:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T14:00:00Z"),
            ("Pacific/Apia", "2011-12-29T00:00:00Z"),
            ("Asia/Kolkata", "2026-03-29T00:00:00Z"),
        ];
        for schedule in schedules {
            for (zone, from) in around {
                let hours = if zone == "Pacific/Apia" { 72 } else { 6 };
                let expected = brute_force(schedule, zone, from, hours);
                let parsed = Schedule::parse(schedule).unwrap();
                let zone_tz = tz(zone);
                let end = Timestamp::from_second(at(from).as_second() + hours * 3600).unwrap();
                let mut got = Vec::new();
                let mut after = at(from);
                while let Some(next) = parsed.next_after(after, &zone_tz).filter(|t| *t <= end) {
                    got.push(next);
                    after = next;
                }
                assert_eq!(got, expected, "{schedule} in {zone} from {from}");
            }
        }
    }

    #[test]
    fn america_new_york_changes_at_two_in_the_morning() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT; 2026-11-01: 02:00 EDT becomes 01:00 EST.
        assert_eq!(
            firings("15 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00"]
        );
        assert_eq!(
            firings("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        assert_eq!(
            firings("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
        // Midnight in New York is 05:00 UTC in winter.
        assert_eq!(
            firings("@daily", "America/New_York", "2026-01-01T06:00:00Z", 1),
            ["2026-01-02T00:00:00-05:00"]
        );
    }

    #[test]
    fn the_latest_missed_firing_is_found_without_walking_every_one() {
        let utc = tz("UTC");
        let every_second = Schedule::parse("* * * * * *").unwrap();
        let since = at("2026-01-01T00:00:00Z");
        let until = at("2026-03-01T12:00:00.5Z");
        assert_eq!(
            every_second.latest_between(since, until, &utc),
            Some(at("2026-03-01T12:00:00Z"))
        );
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.latest_between(since, until, &utc),
            Some(at("2026-03-01T03:00:00Z"))
        );
        // Nothing due between the last firing and now.
        assert_eq!(
            daily.latest_between(at("2026-03-01T03:00:00Z"), until, &utc),
            None
        );
        let yearly = Schedule::parse("@yearly").unwrap();
        assert_eq!(
            yearly.latest_between(at("2020-06-01T00:00:00Z"), until, &utc),
            Some(at("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_which_field_and_why() {
        assert!(error("").contains("it is empty"));
        assert!(error("* * * *").contains("it has 4 fields"));
        assert!(error("* * * * * * *").contains("it has 7 fields"));
        assert_eq!(
            error("60 * * * *"),
            "the minute field `60` (field 1 of 5): 60 is out of range: minute values go from 0 to 59"
        );
        assert_eq!(
            error("0 25 * * *"),
            "the hour field `25` (field 2 of 5): 25 is out of range: hour values go from 0 to 23"
        );
        assert!(error("* * * * * 8").contains("the day-of-week field `8` (field 6 of 6)"));
        assert!(error("* * * * * 8").contains("(0 and 7 are Sunday)"));
        assert!(error("* * 0 * *").contains("day-of-month values go from 1 to 31"));
        assert!(error("* * * 13 *").contains("month values go from 1 to 12"));
        assert!(error("* * * FOO *").contains("nor a name (JAN FEB"));
        assert!(error("*/0 * * * *").contains("a step of 0"));
        assert!(error("*/61 * * * *").contains("larger than the field's 60 values"));
        assert!(error("*/x * * * *").contains("`x` is not a step"));
        assert!(error("1,,2 * * * *").contains("an empty item"));
        assert!(error("* * * * FRI-MON").contains("goes backwards"));
        assert!(error("5- * * * *").contains("both sides of `-`"));
        assert!(error("* * L * *").contains("Quartz extensions"));
        assert!(error("@reboot").contains("`@reboot` is not a schedule"));
        assert!(error("@every 5m").contains("`@every` is not supported"));
        assert!(error("@sometimes").contains("is not a nickname"));
        assert_eq!(
            error("0 0 30 2 *"),
            "it never fires: no day 30 or later in FEB; choose a day that exists (February has 29 in leap years)"
        );
        assert!(error("0 0 31 4,6 *").contains("no day 31 or later in APR, JUN"));
        // With a day of the week, the day-of-month may be one February lacks.
        assert!(Schedule::parse("0 0 30 2 MON").is_ok());
    }

    #[test]
    fn weekday_matches_the_calendar() {
        assert_eq!(weekday(2026, 1, 4), 0); // a Sunday
        assert_eq!(weekday(2024, 2, 29), 4); // a Thursday
        assert_eq!(weekday(2000, 1, 1), 6); // a Saturday
        assert_eq!(weekday(1970, 1, 1), 4); // a Thursday
    }
}
