//! Calendars (Quartz-style): named sets of exclusions attached to triggers. A trigger
//! never fires at an instant its calendar excludes; it moves on to its next instant.
//!
//! Exclusions are read in the calendar's own time zone: whole dates, date ranges,
//! weekdays, daily time windows, and instants matched by Quartz cron expressions
//! (like Quartz's `CronCalendar`, at whole-second granularity).

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::schedule::cron::CronExpr;
use crate::time::{to_datetime, Millis};

use super::trigger::parse_time_zone;

/// Longest calendar name; names also appear in URLs.
const MAX_NAME_LEN: usize = 100;

/// A calendar as the API accepts and returns it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// IANA zone the dates, weekdays and times are read in; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub exclude: Exclusions,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclusions {
    /// Whole days, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<String>,
    /// Inclusive day ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub date_ranges: Vec<DateRange>,
    /// `monday` … `sunday` (or `mon` … `sun`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<String>,
    /// Every day from `from` (inclusive) to `to` (exclusive), `HH:MM[:SS]`; a window
    /// whose `to` is before its `from` runs over midnight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daily: Vec<TimeWindow>,
    /// Quartz cron expressions; every instant they match is excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cron: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    pub from: String,
    pub to: String,
}

/// A validated calendar, ready to answer "is this instant excluded, and until when".
#[derive(Debug, Clone)]
pub struct Calendar {
    pub input: CalendarInput,
    zone: Tz,
    dates: Vec<NaiveDate>,
    ranges: Vec<(NaiveDate, NaiveDate)>,
    weekdays: Vec<Weekday>,
    daily: Vec<(NaiveTime, NaiveTime)>,
    cron: Vec<CronExpr>,
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input
    }
}

fn parse_date(field: &str, text: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| AppError::invalid(field, format!("{text:?} is not a date (YYYY-MM-DD)")))
}

fn parse_time(field: &str, text: &str) -> Result<NaiveTime, AppError> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .map_err(|_| {
            AppError::invalid(field, format!("{text:?} is not a time (HH:MM or HH:MM:SS)"))
        })
}

fn parse_weekday(field: &str, text: &str) -> Result<Weekday, AppError> {
    text.parse::<Weekday>().map_err(|_| {
        AppError::invalid(
            field,
            format!("{text:?} is not a weekday (monday … sunday, or mon … sun)"),
        )
    })
}

/// Calendar names: letters, digits, `-`, `_`, `.`; they are used in URLs and matched in trigger specs.
pub fn validate_name(field: &str, name: &str) -> Result<(), AppError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(AppError::invalid(
            field,
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(AppError::invalid(
            field,
            format!("{bad:?} is not allowed (letters, digits, '-', '_', '.')"),
        ));
    }
    Ok(())
}

impl CalendarInput {
    pub fn validate(self) -> Result<Calendar, AppError> {
        validate_name("name", &self.name)?;
        let zone = parse_time_zone("time_zone", self.time_zone.as_deref().unwrap_or("UTC"))?;
        let ex = &self.exclude;
        let dates = ex
            .dates
            .iter()
            .enumerate()
            .map(|(i, d)| parse_date(&format!("exclude.dates[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ranges = Vec::with_capacity(ex.date_ranges.len());
        for (i, range) in ex.date_ranges.iter().enumerate() {
            let from = parse_date(&format!("exclude.date_ranges[{i}].from"), &range.from)?;
            let to = parse_date(&format!("exclude.date_ranges[{i}].to"), &range.to)?;
            if to < from {
                return Err(AppError::invalid(
                    &format!("exclude.date_ranges[{i}].to"),
                    format!("{} is before from ({})", range.to, range.from),
                ));
            }
            ranges.push((from, to));
        }
        let weekdays = ex
            .weekdays
            .iter()
            .enumerate()
            .map(|(i, d)| parse_weekday(&format!("exclude.weekdays[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut daily = Vec::with_capacity(ex.daily.len());
        for (i, window) in ex.daily.iter().enumerate() {
            let from = parse_time(&format!("exclude.daily[{i}].from"), &window.from)?;
            let to = parse_time(&format!("exclude.daily[{i}].to"), &window.to)?;
            if from == to {
                return Err(AppError::invalid(
                    &format!("exclude.daily[{i}]"),
                    "from and to are equal: the window would be empty",
                ));
            }
            daily.push((from, to));
        }
        let cron = ex
            .cron
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CronExpr::parse(e)
                    .map_err(|err| AppError::invalid(&format!("exclude.cron[{i}]"), err))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Calendar {
            input: self,
            zone,
            dates,
            ranges,
            weekdays,
            daily,
            cron,
        })
    }
}

impl Calendar {
    /// Whether `at` is excluded; when it is, the instant its exclusion ends (later
    /// instants may still be excluded by another rule — callers look again).
    pub fn excluded_until(&self, at: Millis) -> Option<Millis> {
        let local = to_datetime(at).with_timezone(&self.zone);
        let date = local.date_naive();
        let day_excluded = self.dates.contains(&date)
            || self.weekdays.contains(&date.weekday())
            || self
                .ranges
                .iter()
                .any(|(from, to)| *from <= date && date <= *to);
        if day_excluded {
            // Skip to the first day after the excluded run of whole days.
            let mut next = date + Duration::days(1);
            for _ in 0..3_660 {
                let excluded = self.dates.contains(&next)
                    || self.weekdays.contains(&next.weekday())
                    || self
                        .ranges
                        .iter()
                        .any(|(from, to)| *from <= next && next <= *to);
                if !excluded {
                    break;
                }
                next += Duration::days(1);
            }
            return Some(self.start_of(next).max(at + 1));
        }
        let time = local.time();
        for (from, to) in &self.daily {
            let inside = if from < to {
                *from <= time && time < *to
            } else {
                time >= *from || time < *to
            };
            if inside {
                let end_date = if from < to || time < *to {
                    date
                } else {
                    date + Duration::days(1)
                };
                return Some(self.local_instant(end_date, *to).max(at + 1));
            }
        }
        let second = at - at.rem_euclid(1000);
        if self.cron.iter().any(|expr| {
            expr.next_after(to_datetime(second - 1000), self.zone)
                .is_some_and(|next| next.timestamp_millis() == second)
        }) {
            return Some(at + 1);
        }
        None
    }

    fn start_of(&self, date: NaiveDate) -> Millis {
        self.local_instant(date, NaiveTime::MIN)
    }

    /// The instant of a local date and time; a time skipped by a DST change is read as
    /// the first instant after the gap.
    fn local_instant(&self, date: NaiveDate, time: NaiveTime) -> Millis {
        let naive = date.and_time(time);
        for shift in 0..=180 {
            let candidate = naive + Duration::minutes(shift);
            if let Some(t) = self.zone.from_local_datetime(&candidate).earliest() {
                return t.timestamp_millis();
            }
        }
        naive.and_utc().timestamp_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calendar(value: serde_json::Value) -> Calendar {
        serde_json::from_value::<CalendarInput>(value)
            .unwrap()
            .validate()
            .unwrap()
    }

    fn ms(text: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn excluded_days_end_at_the_next_included_midnight_in_the_zone() {
        let cal = calendar(json!({
            "name": "holidays",
            "time_zone": "Europe/Berlin",
            "exclude": { "dates": ["2026-12-25"], "date_ranges": [{ "from": "2026-12-26", "to": "2026-12-27" }] }
        }));
        assert_eq!(cal.excluded_until(ms("2026-12-24T22:59:59Z")), None);
        assert_eq!(
            cal.excluded_until(ms("2026-12-24T23:00:00Z")),
            Some(ms("2026-12-27T23:00:00Z"))
        );
    }

    #[test]
    fn weekdays_daily_windows_and_cron_exclusions() {
        let cal = calendar(json!({
            "name": "office",
            "exclude": {
                "weekdays": ["saturday", "sun"],
                "daily": [{ "from": "22:00", "to": "06:00" }],
                "cron": ["0 30 12 ? * *"]
            }
        }));
        // 2026-11-28 is a Saturday.
        assert_eq!(
            cal.excluded_until(ms("2026-11-28T10:00:00Z")),
            Some(ms("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            cal.excluded_until(ms("2026-11-30T23:00:00Z")),
            Some(ms("2026-12-01T06:00:00Z"))
        );
        assert_eq!(
            cal.excluded_until(ms("2026-12-01T05:00:00Z")),
            Some(ms("2026-12-01T06:00:00Z"))
        );
        assert_eq!(cal.excluded_until(ms("2026-12-01T06:00:00Z")), None);
        assert!(cal.excluded_until(ms("2026-12-01T12:30:00Z")).is_some());
        assert_eq!(cal.excluded_until(ms("2026-12-01T12:30:01Z")), None);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = serde_json::from_value::<CalendarInput>(json!({
            "name": "x", "exclude": { "date_ranges": [{ "from": "2026-01-05", "to": "2026-01-01" }] }
        }))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("exclude.date_ranges[0].to:"), "{err}");
        let err = serde_json::from_value::<CalendarInput>(json!({
            "name": "x", "exclude": { "weekdays": ["funday"] }
        }))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("exclude.weekdays[0]:"), "{err}");
        let err = serde_json::from_value::<CalendarInput>(json!({ "name": "a b" }))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("name:"), "{err}");
    }
}
