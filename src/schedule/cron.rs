//! PLACEHOLDER until the Quartz port lands: supports only `S * * * * ?` style expressions.
use chrono::{DateTime, DurationRound, Timelike, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq)]
pub struct CronExpr {
    src: String,
    step: u32,
    offset: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CronError {
    pub field: &'static str,
    pub reason: String,
}

impl CronExpr {
    pub fn parse(expr: &str) -> Result<CronExpr, CronError> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() < 6 {
            return Err(CronError {
                field: "expression",
                reason: "needs 6 or 7 fields".into(),
            });
        }
        let (offset, step) = match f[0] {
            "*" => (0, 1),
            s if s.contains('/') => {
                let (a, b) = s.split_once('/').unwrap_or(("0", "1"));
                (
                    a.parse().unwrap_or(0),
                    b.parse().map_err(|_| CronError {
                        field: "seconds",
                        reason: "bad step".into(),
                    })?,
                )
            }
            s => (
                s.parse().map_err(|_| CronError {
                    field: "seconds",
                    reason: "bad value".into(),
                })?,
                60,
            ),
        };
        Ok(CronExpr {
            src: expr.trim().into(),
            step,
            offset,
        })
    }
    pub fn next_after(&self, after: DateTime<Utc>, _tz: Tz) -> Option<DateTime<Utc>> {
        let mut t =
            after.duration_trunc(chrono::Duration::seconds(1)).ok()? + chrono::Duration::seconds(1);
        for _ in 0..120 {
            if t.second() >= self.offset && (t.second() - self.offset) % self.step == 0 {
                return Some(t);
            }
            t += chrono::Duration::seconds(1);
        }
        None
    }
    pub fn explain(&self) -> String {
        format!("placeholder for {}", self.src)
    }
    pub fn source(&self) -> &str {
        &self.src
    }
}
impl std::str::FromStr for CronExpr {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, CronError> {
        CronExpr::parse(s)
    }
}
