//! The cron trigger's metrics in the Prometheus text format, per function and trigger index.

use std::fmt::Write;

/// One trigger's numbers at the time of rendering.
pub struct TriggerSample<'a> {
    pub function: &'a str,
    pub index: usize,
    pub firings: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Unix seconds of the last firing's scheduled time, once there is one.
    pub last_firing: Option<i64>,
    pub next_firing: Option<i64>,
}

/// Appends the families; a family with no trigger is still declared, so a scrape config
/// can be written before the first schedule is deployed.
pub fn render<'a>(out: &mut String, samples: impl Iterator<Item = TriggerSample<'a>>) {
    let samples: Vec<TriggerSample<'a>> = samples.collect();
    type Value = fn(&TriggerSample) -> Option<String>;
    let families: [(&str, &str, &str, Value); 5] = [
        (
            "wedge_cron_firings_total",
            "counter",
            "Calls made by each cron trigger (scheduled, caught up, or fired by hand).",
            |s| Some(s.firings.to_string()),
        ),
        (
            "wedge_cron_skipped_total",
            "counter",
            "Firings not run because the previous firing of the trigger was still running (overlap).",
            |s| Some(s.skipped.to_string()),
        ),
        (
            "wedge_cron_failed_total",
            "counter",
            "Calls answered with a status other than 2xx (including traps, 504 timeouts and 503 refusals).",
            |s| Some(s.failed.to_string()),
        ),
        (
            "wedge_cron_last_firing_timestamp_seconds",
            "gauge",
            "Scheduled time of the trigger's last call, in Unix seconds.",
            |s| s.last_firing.map(|t| t.to_string()),
        ),
        (
            "wedge_cron_next_firing_timestamp_seconds",
            "gauge",
            "Time of the trigger's next scheduled firing, in Unix seconds.",
            |s| s.next_firing.map(|t| t.to_string()),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sample in &samples {
            if let Some(value) = value(sample) {
                let _ = writeln!(
                    out,
                    "{name}{{function=\"{}\",trigger=\"{}\"}} {value}",
                    sample.function, sample.index
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_has_a_line_per_trigger() {
        let mut out = String::new();
        render(
            &mut out,
            [
                TriggerSample {
                    function: "nightly",
                    index: 0,
                    firings: 3,
                    skipped: 1,
                    failed: 2,
                    last_firing: Some(1_800_000_000),
                    next_firing: Some(1_800_086_400),
                },
                TriggerSample {
                    function: "fresh",
                    index: 2,
                    firings: 0,
                    skipped: 0,
                    failed: 0,
                    last_firing: None,
                    next_firing: Some(1_800_000_060),
                },
            ]
            .into_iter(),
        );
        for line in [
            "# TYPE wedge_cron_firings_total counter",
            "wedge_cron_firings_total{function=\"nightly\",trigger=\"0\"} 3",
            "wedge_cron_skipped_total{function=\"nightly\",trigger=\"0\"} 1",
            "wedge_cron_failed_total{function=\"nightly\",trigger=\"0\"} 2",
            "wedge_cron_last_firing_timestamp_seconds{function=\"nightly\",trigger=\"0\"} 1800000000",
            "wedge_cron_next_firing_timestamp_seconds{function=\"fresh\",trigger=\"2\"} 1800000060",
            "wedge_cron_firings_total{function=\"fresh\",trigger=\"2\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
        }
        assert!(!out.contains("wedge_cron_last_firing_timestamp_seconds{function=\"fresh\""));
    }
}
