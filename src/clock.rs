//! Wall-clock time as Unix milliseconds (the unit every stored timestamp uses) and its display.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-11-29T09:05:57Z` for a Unix-milliseconds timestamp (UTC, second precision).
pub fn format_utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// `2026-11-29 09:05 UTC` for a Unix-milliseconds timestamp (minute precision).
pub fn format_utc_minute(ms: i64) -> String {
    let full = format_utc(ms);
    format!("{} {} UTC", &full[..10], &full[11..16])
}

/// `29 Nov 2026` for a Unix-milliseconds timestamp (the UTC day), as people write dates.
pub fn format_date(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let month = MONTHS[usize::try_from(month).unwrap_or(1).clamp(1, 12) - 1];
    format!("{day} {month} {year}")
}

/// The first millisecond of the month (UTC) that `ms` falls in.
pub fn month_start_ms(ms: i64) -> i64 {
    let days = ms.div_euclid(86_400_000);
    let (_, _, day) = civil_from_days(days);
    (days - i64::from(day) + 1) * 86_400_000
}

/// The first millisecond of the month (UTC) after the one `ms` falls in.
pub fn next_month_start_ms(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(86_400_000));
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * 86_400_000
}

/// The first millisecond of the day (UTC) that `ms` falls in.
pub fn day_start_ms(ms: i64) -> i64 {
    ms.div_euclid(86_400_000) * 86_400_000
}

/// `2026-11-29` for a Unix-milliseconds timestamp (the UTC day).
pub fn format_day(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The first millisecond (UTC) of a `YYYY-MM-DD` day; `None` if it is not a real date.
pub fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next().filter(|p| p.len() == 4)?.parse().ok()?;
    let month: u32 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let day: u32 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end comes back as another date.
    (civil_from_days(days) == (year, month, day)).then_some(days * 86_400_000)
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_their_first_day() {
        // 2026-11-29T09:05:57Z → 2026-11-01T00:00:00Z; a leap February; the epoch.
        assert_eq!(
            format_utc(month_start_ms(1_795_943_157_000)),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(
            format_utc(month_start_ms(1_709_164_800_000)),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(month_start_ms(0), 0);
    }

    #[test]
    fn days_and_months_turn_over_in_utc() {
        // 2026-12-31T23:59:59Z: the next month is January of the next year.
        let end_of_year = 1_798_761_599_000;
        assert_eq!(
            format_utc(next_month_start_ms(end_of_year)),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            format_utc(next_month_start_ms(1_709_164_800_000)),
            "2024-03-01T00:00:00Z"
        );
        assert_eq!(
            format_utc(day_start_ms(end_of_year)),
            "2026-12-31T00:00:00Z"
        );
        assert_eq!(format_day(end_of_year), "2026-12-31");
        assert_eq!(parse_day("2026-12-31"), Some(day_start_ms(end_of_year)));
        assert_eq!(parse_day("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_day("1970-01-01"), Some(0));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "yesterday",
            "2026-01-00",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_943_157_000), "2026-11-29T09:05:57Z");
    }
}
