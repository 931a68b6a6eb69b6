//! `cronhook jobs import-crontab`: a classic crontab (one target URL per line) turned
//! into job definitions with Quartz cron triggers.
//!
//! Conversion rules (README, "Jobs as files"):
//! - five fields `minute hour day-of-month month day-of-week`, or `@hourly`, `@daily`,
//!   `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`; `@reboot` has no
//!   schedule and is reported;
//! - Quartz gets a leading seconds field `0` and `?` in one of its two day fields;
//! - cron numbers days of the week 0-7 (0 and 7 = Sunday), Quartz 1-7 (1 = Sunday): the
//!   day-of-week field is rewritten with Quartz's names (`MON-FRI`);
//! - when both day fields are restricted, cron fires on days matching *either* (or, when
//!   one starts with `*`, *both*); one Quartz expression can say neither, and two
//!   triggers would fire twice on a day matching both, so such a line is reported;
//! - the target is the first `http://` or `https://` token of the command; a line
//!   without one is reported;
//! - `CRON_TZ=` / `TZ=` lines set the time zone of the lines after them; other
//!   `NAME=value` lines, comments and blank lines are skipped;
//! - a trailing `# name` comment names the job (when it is a valid name); otherwise the
//!   job is `line-N`.

use chrono_tz::Tz;
use serde_json::Value;

use crate::domain::{
    Concurrency, JobInput, Mode, RetryPolicy, Routing, Target, TriggerInput, TriggerKind,
};
use crate::schedule::cron::CronExpr;

/// One line that could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible {
    pub line: usize,
    pub reason: String,
}

/// The outcome of converting a whole crontab.
#[derive(Debug, Default)]
pub struct Conversion {
    /// Job definitions in the API's input shape (the job file format).
    pub jobs: Vec<JobInput>,
    pub failures: Vec<Unconvertible>,
}

/// A schedule converted from one line: the Quartz expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub expression: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
/// Quartz's day names in Quartz order (1 = SUN).
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One parsed cron field: the set of values it allows, and whether its text started
/// with `*` (cron's "star" flag, which changes how the two day fields combine).
#[derive(Debug, Clone)]
struct Field {
    values: Vec<bool>,
    starred: bool,
    /// The field as Quartz reads it (cron syntax is the same for these fields).
    text: String,
}

impl Field {
    fn is_full(&self) -> bool {
        self.values.iter().all(|v| *v)
    }
}

struct FieldRule {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (JAN = 1, SUN = 0 in cron numbering).
    names_from: u32,
}

const MINUTE: FieldRule = FieldRule {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: FieldRule = FieldRule {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY_OF_MONTH: FieldRule = FieldRule {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: FieldRule = FieldRule {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
/// Cron's day of week: 0-7, 0 and 7 both Sunday.
const DAY_OF_WEEK: FieldRule = FieldRule {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAYS,
    names_from: 0,
};

fn parse_value(rule: &FieldRule, text: &str) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        if n < rule.min || n > rule.max {
            return Err(format!(
                "{}: value {n} out of range {}-{}",
                rule.name, rule.min, rule.max
            ));
        }
        return Ok(n);
    }
    let upper = text.to_ascii_uppercase();
    if let Some(i) = rule.names.iter().position(|n| *n == upper) {
        return Ok(rule.names_from + i as u32);
    }
    Err(format!("{}: {text:?} is not a valid value", rule.name))
}

fn parse_field(rule: &FieldRule, text: &str) -> Result<Field, String> {
    let size = (rule.max + 1) as usize;
    let mut values = vec![false; size];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{}: step {step:?} is not a positive number", rule.name)
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = if range == "*" {
            (rule.min, rule.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(rule, a)?, parse_value(rule, b)?);
            if a > b {
                return Err(format!(
                    "{}: range {range} runs backwards (cron does not accept it)",
                    rule.name
                ));
            }
            (a, b)
        } else {
            let a = parse_value(rule, range)?;
            // `N/step` means N to the end of the field, stepping.
            (a, if part.contains('/') { rule.max } else { a })
        };
        let mut v = first;
        while v <= last {
            values[v as usize] = true;
            v += step;
        }
    }
    if values.iter().skip(rule.min as usize).all(|v| !*v) {
        return Err(format!("{}: {text:?} allows no value", rule.name));
    }
    Ok(Field {
        values: values.split_off(rule.min as usize),
        starred: text.starts_with('*'),
        text: text.to_ascii_uppercase(),
    })
}

/// The cron day-of-week set (0-7) as a Quartz field with names, e.g. `MON-FRI` or `SUN,SAT`.
fn quartz_days(field: &Field) -> String {
    // Quartz day d (1..=7) = cron day d-1; cron 7 is Sunday too.
    let at = |cron_day: usize| field.values.get(cron_day).copied().unwrap_or(false);
    let days: Vec<bool> = (0..7).map(|d| at(d) || (d == 0 && at(7))).collect();
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        if !days[d] {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && days[d + 1] {
            d += 1;
        }
        parts.push(if d == start {
            DAYS[start].to_string()
        } else if d == start + 1 {
            format!("{},{}", DAYS[start], DAYS[d])
        } else {
            format!("{}-{}", DAYS[start], DAYS[d])
        });
        d += 1;
    }
    parts.join(",")
}

fn full_week(field: &Field) -> bool {
    let at = |d: usize| field.values.get(d).copied().unwrap_or(false);
    (0..7).all(|d| at(d) || (d == 0 && at(7)))
}

/// Converts a cron schedule (five fields or an `@` macro) to a Quartz expression,
/// checked with cronhook's own Quartz parser.
pub fn convert_schedule(schedule: &str) -> Result<Converted, String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let expression = match fields.as_slice() {
        [special] if special.starts_with('@') => match special.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 ?".to_string(),
            "@monthly" => "0 0 0 1 * ?".to_string(),
            "@weekly" => "0 0 0 ? * SUN".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * ?".to_string(),
            "@hourly" => "0 0 * * * ?".to_string(),
            "@reboot" => {
                return Err("@reboot runs at boot, not on a schedule; there is no Quartz equivalent".into())
            }
            other => return Err(format!("unknown schedule {other:?}")),
        },
        [minute, hour, dom, month, dow] => {
            let minute = parse_field(&MINUTE, minute)?;
            let hour = parse_field(&HOUR, hour)?;
            let dom = parse_field(&DAY_OF_MONTH, dom)?;
            let month = parse_field(&MONTH, month)?;
            let dow = parse_field(&DAY_OF_WEEK, dow)?;
            let all_days = |f: &Field| f.is_full();
            let (dom_q, dow_q) = if dom.starred || dow.starred {
                // Cron: a day must match both fields.
                match (all_days(&dom), full_week(&dow)) {
                    (_, true) => (dom_text(&dom), "?".to_string()),
                    (true, false) => ("?".to_string(), quartz_days(&dow)),
                    (false, false) => {
                        return Err(format!(
                            "day-of-month {:?} and day-of-week {:?} are both restricted (cron requires both to match); one Quartz expression cannot say that",
                            dom.text, dow.text
                        ))
                    }
                }
            } else if all_days(&dom) || full_week(&dow) {
                // Cron: either field matching is enough, and one matches every day.
                ("*".to_string(), "?".to_string())
            } else {
                return Err(format!(
                    "day-of-month {:?} and day-of-week {:?} are both restricted: cron fires on days matching either, which one Quartz expression cannot say (two triggers would fire twice on days matching both); split the line into one per day field",
                    dom.text, dow.text
                ));
            };
            format!(
                "0 {} {} {} {} {}",
                minute.text, hour.text, dom_q, month.text, dow_q
            )
        }
        _ => {
            return Err(format!(
                "expected five schedule fields (minute hour day-of-month month day-of-week) or an @ macro, found {}",
                fields.len()
            ))
        }
    };
    CronExpr::parse(&expression)
        .map_err(|e| format!("converted expression {expression:?} is not valid Quartz: {e}"))?;
    Ok(Converted { expression })
}

fn dom_text(dom: &Field) -> String {
    if dom.is_full() {
        "*".into()
    } else {
        dom.text.clone()
    }
}

/// `NAME=value` (environment) lines; returns the name and the unquoted value.
fn environment_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some((name, value))
}

/// A valid group or job name (the server's rule).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The first http(s) URL among the command's tokens, quotes stripped.
fn target_url(command: &str) -> Result<String, String> {
    for token in command.split_whitespace() {
        let token = token.trim_matches(|c| c == '"' || c == '\'');
        let lower = token.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let parsed = url::Url::parse(token)
                .map_err(|e| format!("target {token:?} is not a valid URL: {e}"))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(format!("target {token:?} has no host"));
            }
            return Ok(token.to_string());
        }
    }
    Err("the command has no http:// or https:// URL to call".into())
}

/// Converts a whole crontab. Jobs go to `group`; the time zone starts as `zone`.
pub fn convert(text: &str, group: &str, zone: &str) -> Conversion {
    let mut out = Conversion::default();
    let mut zone = zone.to_string();
    let mut names = std::collections::HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fail = |reason: String| {
            out.failures.push(Unconvertible {
                line: number,
                reason,
            })
        };
        if let Some((name, value)) = environment_line(line) {
            // A schedule line has spaces or '*' before its first '=', never a plain name.
            if name == "CRON_TZ" || name == "TZ" {
                match value.parse::<Tz>() {
                    Ok(_) => zone = value.to_string(),
                    Err(_) => fail(format!(
                        "{name}: unknown time zone {value:?} (use an IANA name such as Europe/Berlin); later lines keep {zone}"
                    )),
                }
            }
            continue;
        }
        // Split off a trailing " # comment" (a URL fragment has no space before '#').
        let (body, comment) = match line.find(" #").or_else(|| line.find("\t#")) {
            Some(at) => (line[..at].trim_end(), Some(line[at + 2..].trim())),
            None => (line, None),
        };
        let field_count = if body.starts_with('@') { 1 } else { 5 };
        let mut tokens = body.split_whitespace();
        let schedule: Vec<&str> = tokens.by_ref().take(field_count).collect();
        let command: Vec<&str> = tokens.collect();
        if schedule.len() < field_count || command.is_empty() {
            fail("expected a schedule followed by a command".into());
            continue;
        }
        let converted = match convert_schedule(&schedule.join(" ")) {
            Ok(c) => c,
            Err(reason) => {
                fail(reason);
                continue;
            }
        };
        let url = match target_url(&command.join(" ")) {
            Ok(url) => url,
            Err(reason) => {
                fail(reason);
                continue;
            }
        };
        let name = match comment {
            Some(c) if valid_name(c) => c.to_string(),
            _ => format!("line-{number}"),
        };
        if !names.insert(name.clone()) {
            fail(format!(
                "job name {name:?} is already used by an earlier line"
            ));
            continue;
        }
        let mut description = format!("crontab line {number}: {line}");
        if description.len() > 4_096 {
            let mut cut = 4_096;
            while !description.is_char_boundary(cut) {
                cut -= 1;
            }
            description.truncate(cut);
        }
        out.jobs.push(JobInput {
            group: group.to_string(),
            name,
            description,
            target: Target {
                url: Some(url),
                ..Target::default()
            },
            // A plain URL is a webhook: its 2xx answer is the result.
            mode: Mode::Sync,
            payload: Value::Null,
            timeout_ms: None,
            retry: RetryPolicy::default(),
            concurrency: Concurrency::default(),
            routing: Routing::default(),
            triggers: vec![TriggerInput {
                kind: TriggerKind::Cron,
                expression: Some(converted.expression),
                time_zone: Some(zone.clone()),
                at: None,
                interval_ms: None,
                start_at: None,
                repeat_count: None,
                misfire: None,
                misfire_threshold_ms: None,
                calendar: None,
            }],
            on_success: Vec::new(),
            on_failure: Vec::new(),
            alert_url: None,
            keep_fires: None,
            paused: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn quartz(schedule: &str) -> String {
        convert_schedule(schedule)
            .unwrap_or_else(|e| panic!("{schedule}: {e}"))
            .expression
    }

    fn next(expression: &str, after: &str, count: usize) -> Vec<String> {
        let expr = CronExpr::parse(expression).unwrap();
        let mut t: DateTime<Utc> = after.parse().unwrap();
        let mut out = Vec::new();
        for _ in 0..count {
            t = expr.next_after(t, chrono_tz::UTC).unwrap();
            out.push(t.format("%Y-%m-%d %a %H:%M").to_string());
        }
        out
    }

    #[test]
    fn five_fields_gain_seconds_and_a_question_mark() {
        assert_eq!(quartz("*/15 * * * *"), "0 */15 * * * ?");
        assert_eq!(quartz("30 2 1 * *"), "0 30 2 1 * ?");
        assert_eq!(quartz("0 9-17/2 * jan,Jul *"), "0 0 9-17/2 * JAN,JUL ?");
        assert_eq!(quartz("5 4 * * 0"), "0 5 4 ? * SUN");
    }

    #[test]
    fn day_of_week_numbers_shift_to_quartz() {
        assert_eq!(quartz("0 9 * * 1-5"), "0 0 9 ? * MON-FRI");
        assert_eq!(quartz("0 9 * * 7"), "0 0 9 ? * SUN");
        assert_eq!(quartz("0 9 * * 5-7"), "0 0 9 ? * SUN,FRI,SAT");
        assert_eq!(quartz("0 9 * * sat,sun"), "0 0 9 ? * SUN,SAT");
        assert_eq!(quartz("0 9 * * */2"), "0 0 9 ? * SUN,TUE,THU,SAT");
        assert_eq!(quartz("0 9 * * 0-6"), "0 0 9 * * ?");
        // 2026-11-23 is a Monday: Monday to Friday at 09:00.
        assert_eq!(
            next(&quartz("0 9 * * 1-5"), "2026-11-27T10:00:00Z", 2),
            ["2026-11-30 Mon 09:00", "2026-12-01 Tue 09:00"]
        );
        assert_eq!(
            next(&quartz("0 9 * * 0"), "2026-11-23T00:00:00Z", 1),
            ["2026-11-29 Sun 09:00"]
        );
    }

    #[test]
    fn macros_convert() {
        assert_eq!(quartz("@hourly"), "0 0 * * * ?");
        assert_eq!(quartz("@daily"), "0 0 0 * * ?");
        assert_eq!(quartz("@midnight"), "0 0 0 * * ?");
        assert_eq!(quartz("@weekly"), "0 0 0 ? * SUN");
        assert_eq!(quartz("@monthly"), "0 0 0 1 * ?");
        assert_eq!(quartz("@yearly"), "0 0 0 1 1 ?");
        assert_eq!(quartz("@annually"), "0 0 0 1 1 ?");
        assert!(convert_schedule("@reboot").unwrap_err().contains("@reboot"));
    }

    #[test]
    fn both_day_fields_restricted_is_reported() {
        let err = convert_schedule("0 0 1,15 * 1").unwrap_err();
        assert!(err.contains("either"), "{err}");
        let err = convert_schedule("0 0 */2 * 1").unwrap_err();
        assert!(err.contains("both to match"), "{err}");
        // Either field matching every day: every day.
        assert_eq!(quartz("0 0 1 * 0-7"), "0 0 0 * * ?");
        // A starred day-of-month step with any weekday: the step alone.
        assert_eq!(quartz("0 0 */2 * *"), "0 0 0 */2 * ?");
    }

    #[test]
    fn bad_fields_name_the_field() {
        assert!(convert_schedule("60 * * * *")
            .unwrap_err()
            .starts_with("minute: value 60"));
        assert!(convert_schedule("0 0 0 * *")
            .unwrap_err()
            .starts_with("day-of-month: value 0"));
        assert!(convert_schedule("0 22-2 * * *")
            .unwrap_err()
            .contains("backwards"));
        assert!(convert_schedule("0 0 * * 8")
            .unwrap_err()
            .starts_with("day-of-week"));
        assert!(convert_schedule("0 0 * *").unwrap_err().contains("five"));
        assert!(convert_schedule("0 0 L * *")
            .unwrap_err()
            .starts_with("day-of-month"));
    }

    /// Does cron itself fire at this minute? (Vixie rules, from the parsed fields.)
    fn cron_fires(fields: &[Field], t: DateTime<Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let [minute, hour, dom, month, dow] = fields else {
            panic!("five fields")
        };
        let weekday = t.weekday().num_days_from_sunday() as usize;
        let dom_ok = dom.values[t.day() as usize - 1];
        let dow_ok = dow.values[weekday] || (weekday == 0 && dow.values[7]);
        let day_ok = if dom.starred || dow.starred {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        };
        minute.values[t.minute() as usize]
            && hour.values[t.hour() as usize]
            && month.values[t.month() as usize - 1]
            && day_ok
    }

    #[test]
    fn converted_expressions_fire_exactly_when_cron_would() {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let end: DateTime<Utc> = "2026-05-01T00:00:00Z".parse().unwrap();
        for schedule in [
            "*/15 * * * *",
            "5 4 * * *",
            "0 9-17/2 * * 1-5",
            "30 2 1,15 * *",
            "0 0 */2 * *",
            "0 12 * */3 *",
            "7/20 3/5 * * *",
            "0 0 * * 5-7",
            "0 0 * * sat,sun",
            "15 10 10-20 feb-apr *",
            "0 0 31 * *",
            "1-5,30-33 0 * * 0",
            "0 */6 * jan,mar *",
            "0 0 5/10 * *",
            "59 23 * * 7",
            "0 0 * * */3",
            "0 0 1-31 * 2",
            "0 0 1 * 0-7",
            "*/7 */5 * * *",
            "0 8 * * 1,3-4",
        ] {
            let expr = CronExpr::parse(&quartz(schedule)).unwrap();
            let mut quartz_fires = Vec::new();
            let mut t = start - chrono::Duration::seconds(1);
            while let Some(next) = expr.next_after(t, chrono_tz::UTC) {
                if next >= end {
                    break;
                }
                quartz_fires.push(next);
                t = next;
            }
            let f: Vec<&str> = schedule.split_whitespace().collect();
            let fields = [
                parse_field(&MINUTE, f[0]).unwrap(),
                parse_field(&HOUR, f[1]).unwrap(),
                parse_field(&DAY_OF_MONTH, f[2]).unwrap(),
                parse_field(&MONTH, f[3]).unwrap(),
                parse_field(&DAY_OF_WEEK, f[4]).unwrap(),
            ];
            let mut cron_fires_at = Vec::new();
            let mut t = start;
            while t < end {
                if cron_fires(&fields, t) {
                    cron_fires_at.push(t);
                }
                t += chrono::Duration::minutes(1);
            }
            assert!(!cron_fires_at.is_empty(), "{schedule}");
            assert_eq!(
                quartz_fires,
                cron_fires_at,
                "{schedule} -> {}",
                quartz(schedule)
            );
        }
    }

    #[test]
    fn a_crontab_converts_line_by_line() {
        let text = "\
# nightly jobs
SHELL=/bin/sh
MAILTO=\"ops@example.com\"

*/5 * * * * curl -fsS https://example.com/ping # ping
CRON_TZ=Europe/Berlin
0 3 * * 1-5 curl -X POST 'http://127.0.0.1:9/backup?x=1#frag'
@reboot curl https://example.com/boot
0 4 * * * /usr/local/bin/cleanup.sh
0 0 1 * 1 curl https://example.com/both
TZ=Mars/Olympus
@daily https://example.com/daily # run the daily report
";
        let out = convert(text, "crontab", "UTC");
        let lines: Vec<usize> = out.failures.iter().map(|f| f.line).collect();
        assert_eq!(lines, [8, 9, 10, 11], "{:?}", out.failures);
        assert!(out.failures[1].reason.contains("no http"));
        assert!(out.failures[3].reason.contains("Mars/Olympus"));
        assert_eq!(out.jobs.len(), 3);
        let trigger = |i: usize| &out.jobs[i].triggers[0];
        assert_eq!(out.jobs[0].name, "ping");
        assert_eq!(
            out.jobs[0].target.url.as_deref(),
            Some("https://example.com/ping")
        );
        assert_eq!(out.jobs[0].mode, Mode::Sync);
        assert_eq!(trigger(0).time_zone.as_deref(), Some("UTC"));
        assert_eq!(out.jobs[1].name, "line-7");
        assert_eq!(
            out.jobs[1].target.url.as_deref(),
            Some("http://127.0.0.1:9/backup?x=1#frag")
        );
        assert_eq!(trigger(1).expression.as_deref(), Some("0 0 3 ? * MON-FRI"));
        assert_eq!(trigger(1).time_zone.as_deref(), Some("Europe/Berlin"));
        // Not a valid name: the comment stays in the description only.
        assert_eq!(out.jobs[2].name, "line-12");
        assert!(out.jobs[2].description.contains("run the daily report"));
        assert_eq!(trigger(2).time_zone.as_deref(), Some("Europe/Berlin"));
        for job in &out.jobs {
            job.validate(300_000).unwrap();
            trigger(0).validate("t", 0).unwrap();
        }
    }
}
