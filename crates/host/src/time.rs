//! Timestamps as RFC 3339 text (UTC), for log lines and the deploy API, without a calendar
//! dependency: the civil-from-days conversion is Howard Hinnant's algorithm.

/// `2026-11-23T16:40:01.123Z`.
pub fn rfc3339_millis(unix_millis: u64) -> String {
    let (date, time) = civil(unix_millis / 1000);
    format!("{date}T{time}.{:03}Z", unix_millis % 1000)
}

/// `2026-11-23T16:40:01Z`.
pub fn rfc3339_seconds(unix_seconds: u64) -> String {
    let (date, time) = civil(unix_seconds);
    format!("{date}T{time}Z")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn civil(unix_seconds: u64) -> (String, String) {
    let days = (unix_seconds / 86_400) as i64;
    let seconds = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_seconds(1_795_451_201), "2026-11-23T16:26:41Z");
    }
}
