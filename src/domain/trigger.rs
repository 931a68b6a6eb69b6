//! A trigger: when a job fires. `cron` (Quartz syntax + time zone), `at` (one
//! instant), `immediate` (once, now) and `interval` (every N ms).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::calendar::{validate_name, Calendar};
use crate::error::AppError;
use crate::schedule::cron::CronExpr;
use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Cron,
    At,
    Immediate,
    Interval,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Cron => "cron",
            TriggerKind::At => "at",
            TriggerKind::Immediate => "immediate",
            TriggerKind::Interval => "interval",
        }
    }
}

/// What to do with instants missed by more than the misfire threshold (after downtime, say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Fire once now for the most recent missed instant; record nothing for the others.
    #[default]
    FireNow,
    /// Record the most recent missed instant as `misfired` and wait for the next one.
    Skip,
    /// Fire every missed instant, the most recent `catch_up_max` of them.
    CatchUp,
}

/// One trigger as the API accepts it. Flat on purpose: each kind reads the fields
/// it needs, and a field used with the wrong kind is an error that names it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    pub kind: TriggerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// Interval triggers: repeats after the first fire (Quartz SimpleTrigger semantics); unset = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<MisfirePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire_threshold_ms: Option<u64>,
    /// Name of a calendar whose exclusions this trigger skips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

/// A validated trigger, as stored in `triggers.spec`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerSpec {
    pub kind: TriggerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<u64>,
    #[serde(default)]
    pub misfire: MisfirePolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire_threshold_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// The named calendar's rules, attached after loading (`db::calendars::attach`);
    /// never stored with the trigger, so a calendar change applies at once.
    #[serde(skip)]
    pub calendar_rules: Option<Arc<Calendar>>,
}

/// Instants one calendar may skip in a row before the trigger is treated as finished
/// (a calendar that excludes everything must not spin the scheduler).
const MAX_CALENDAR_SKIPS: usize = 10_000;

/// The smallest interval accepted; below it a trigger is a busy loop, not a schedule.
pub const MIN_INTERVAL_MS: u64 = 10;

pub fn parse_time_zone(field: &str, name: &str) -> Result<Tz, AppError> {
    name.parse::<Tz>().map_err(|_| {
        AppError::invalid(
            field,
            format!("unknown time zone {name:?} (use an IANA name such as Europe/Berlin)"),
        )
    })
}

impl TriggerInput {
    /// Validates against the kind's rules. `field` prefixes error messages, e.g. `triggers[0]`.
    /// `now` fills in defaults (an interval without start begins now).
    pub fn validate(&self, field: &str, now: Millis) -> Result<TriggerSpec, AppError> {
        let f = |name: &str| format!("{field}.{name}");
        let unexpected = |name: &str, present: bool| -> Result<(), AppError> {
            if present {
                Err(AppError::invalid(
                    &f(name),
                    format!("not used by kind {}", self.kind.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        let mut spec = TriggerSpec {
            kind: self.kind,
            expression: None,
            time_zone: None,
            at: None,
            interval_ms: None,
            start_at: None,
            repeat_count: None,
            misfire: self.misfire.unwrap_or_default(),
            misfire_threshold_ms: self.misfire_threshold_ms,
            calendar: self.calendar.clone(),
            calendar_rules: None,
        };
        if let Some(name) = &self.calendar {
            validate_name(&f("calendar"), name)?;
        }
        match self.kind {
            TriggerKind::Cron => {
                let expression = self
                    .expression
                    .as_deref()
                    .ok_or_else(|| AppError::invalid(&f("expression"), "required for kind cron"))?;
                let parsed = CronExpr::parse(expression)
                    .map_err(|e| AppError::invalid(&f("expression"), e))?;
                let zone = self.time_zone.clone().unwrap_or_else(|| "UTC".into());
                parse_time_zone(&f("time_zone"), &zone)?;
                unexpected("at", self.at.is_some())?;
                unexpected("interval_ms", self.interval_ms.is_some())?;
                unexpected("start_at", self.start_at.is_some())?;
                unexpected("repeat_count", self.repeat_count.is_some())?;
                spec.expression = Some(parsed.source().to_string());
                spec.time_zone = Some(zone);
            }
            TriggerKind::At => {
                let at = self
                    .at
                    .ok_or_else(|| AppError::invalid(&f("at"), "required for kind at"))?;
                unexpected("expression", self.expression.is_some())?;
                unexpected("time_zone", self.time_zone.is_some())?;
                unexpected("interval_ms", self.interval_ms.is_some())?;
                unexpected("start_at", self.start_at.is_some())?;
                unexpected("repeat_count", self.repeat_count.is_some())?;
                spec.at = Some(at.timestamp_millis());
            }
            TriggerKind::Immediate => {
                unexpected("expression", self.expression.is_some())?;
                unexpected("time_zone", self.time_zone.is_some())?;
                unexpected("at", self.at.is_some())?;
                unexpected("interval_ms", self.interval_ms.is_some())?;
                unexpected("start_at", self.start_at.is_some())?;
                unexpected("repeat_count", self.repeat_count.is_some())?;
                spec.at = Some(now);
            }
            TriggerKind::Interval => {
                let interval = self.interval_ms.ok_or_else(|| {
                    AppError::invalid(&f("interval_ms"), "required for kind interval")
                })?;
                if interval < MIN_INTERVAL_MS {
                    return Err(AppError::invalid(
                        &f("interval_ms"),
                        format!("must be at least {MIN_INTERVAL_MS}"),
                    ));
                }
                unexpected("expression", self.expression.is_some())?;
                unexpected("time_zone", self.time_zone.is_some())?;
                unexpected("at", self.at.is_some())?;
                spec.interval_ms = Some(interval);
                spec.start_at = Some(self.start_at.map(|t| t.timestamp_millis()).unwrap_or(now));
                spec.repeat_count = self.repeat_count;
            }
        }
        Ok(spec)
    }
}

impl TriggerSpec {
    /// The first instant at or after `from` (used when a trigger is created or resumed).
    pub fn first_at_or_after(&self, from: Millis) -> Option<Millis> {
        match self.kind {
            TriggerKind::At | TriggerKind::Immediate => self.at.filter(|at| !self.is_excluded(*at)),
            _ => self.next_after(from - 1),
        }
    }

    /// The next instant strictly after `after` that the trigger's calendar does not
    /// exclude, or None when the trigger is finished.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let Some(calendar) = &self.calendar_rules else {
            return self.next_instant_after(after);
        };
        let mut after = after;
        for _ in 0..MAX_CALENDAR_SKIPS {
            let candidate = self.next_instant_after(after)?;
            match calendar.excluded_until(candidate) {
                None => return Some(candidate),
                // The next instant at or after the exclusion's end comes next.
                Some(end) => after = (end - 1).max(candidate),
            }
        }
        None
    }

    /// Whether the trigger's calendar excludes `at`.
    pub fn is_excluded(&self, at: Millis) -> bool {
        self.calendar_rules
            .as_ref()
            .is_some_and(|calendar| calendar.excluded_until(at).is_some())
    }

    /// The schedule's own next instant, calendar aside.
    fn next_instant_after(&self, after: Millis) -> Option<Millis> {
        match self.kind {
            TriggerKind::At | TriggerKind::Immediate => self.at.filter(|at| *at > after),
            TriggerKind::Interval => {
                let interval = self.interval_ms? as i64;
                let start = self.start_at?;
                let index = if after < start {
                    0
                } else {
                    (after - start) / interval + 1
                };
                if let Some(repeats) = self.repeat_count {
                    if index as u64 > repeats {
                        return None;
                    }
                }
                Some(start + index * interval)
            }
            TriggerKind::Cron => {
                let expr = CronExpr::parse_cached(self.expression.as_deref()?).ok()?;
                let tz: Tz = self.time_zone.as_deref().unwrap_or("UTC").parse().ok()?;
                let after = crate::time::to_datetime(after);
                expr.next_after(after, tz).map(|t| t.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(start: Millis, every: u64, repeats: Option<u64>) -> TriggerSpec {
        TriggerSpec {
            kind: TriggerKind::Interval,
            expression: None,
            time_zone: None,
            at: None,
            interval_ms: Some(every),
            start_at: Some(start),
            repeat_count: repeats,
            misfire: MisfirePolicy::FireNow,
            misfire_threshold_ms: None,
            calendar: None,
            calendar_rules: None,
        }
    }

    #[test]
    fn interval_steps_from_start_and_stops_after_repeats() {
        let t = interval(1_000, 100, Some(2));
        assert_eq!(t.first_at_or_after(0), Some(1_000));
        assert_eq!(t.first_at_or_after(1_000), Some(1_000));
        assert_eq!(t.next_after(1_000), Some(1_100));
        assert_eq!(t.next_after(1_150), Some(1_200));
        assert_eq!(t.next_after(1_200), None);
    }

    #[test]
    fn wrong_fields_for_kind_are_named() {
        let input: TriggerInput = serde_json::from_value(
            serde_json::json!({"kind": "at", "at": "2030-01-01T00:00:00Z", "interval_ms": 5}),
        )
        .unwrap();
        let err = input.validate("triggers[1]", 0).unwrap_err().to_string();
        assert_eq!(err, "triggers[1].interval_ms: not used by kind at");
        let input: TriggerInput = serde_json::from_value(serde_json::json!({"kind": "cron", "expression": "0 0 * * * ?", "time_zone": "Mars/Base"})).unwrap();
        let err = input.validate("triggers[0]", 0).unwrap_err().to_string();
        assert!(
            err.starts_with("triggers[0].time_zone: unknown time zone"),
            "{err}"
        );
    }
}
