//! Quartz cron expressions: parsing, next fire time and a plain-English explanation.
//!
//! This is a faithful port of Quartz 2.3.2's `org.quartz.CronExpression` (`buildExpression`,
//! `storeExpressionVals`, `checkNext`, `addToSet`, `getTimeAfter`). Fire times must agree with
//! Quartz *exactly*, including its quirks, because cronhook promises Quartz-compatible
//! schedules; `tests/quartz_differential.rs` checks this against the real Quartz jar.
//!
//! Quartz computes fire times by poking fields of a lenient `java.util.GregorianCalendar`
//! and letting the calendar normalise them. Daylight-saving behaviour falls out of how that
//! calendar maps a local wall-clock time to an instant, so instead of re-deriving the rules we
//! emulate the calendar (`JavaCalendar`) and port the search loop statement by statement:
//! - a wall time inside a DST gap resolves with the offset from *before* the gap, i.e. it is
//!   pushed forward by the gap length (02:30 becomes 03:30);
//! - a wall time inside a DST overlap resolves to the *second* (standard-time) occurrence;
//!   Quartz re-resolves its starting point from wall-clock fields, so while the clock is in the
//!   first occurrence of a repeated hour it jumps straight to the second one.
//!
//! Deliberate deviations (where Quartz has no usable answer):
//! - expressions Quartz accepts but cannot evaluate are rejected at parse time: a field left
//!   without values (`L` in the seconds field, a field of only commas), where `getTimeAfter`
//!   throws; and `0W` or `L-nW` with n >= 28, where it loops forever once it reaches February;
//! - where Quartz's search cycles forever because a `W` day does not exist locally (Pacific/Apia
//!   skipped 2011-12-30), we skip that day;
//! - the `W` rules compare against `after` at second precision (Quartz mixes in the current
//!   wall-clock millisecond, which only matters when `after` has a fraction of a second).
//!
//! Time-zone data comes from chrono-tz (IANA). Java models zones as transitions up to 2037
//! plus a recurring last rule; we extend chrono-tz past its 2099 table the same way. Zones
//! whose future changes are not a recurring rule (Morocco, Palestine, and Java's view of
//! Africa/Windhoek) therefore differ from Java after 2037.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

// ================================================================================================
// Public API
// ================================================================================================

/// A parsed Quartz cron expression (`sec min hour day-of-month month day-of-week [year]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CronExpr {
    source: String,
    sets: [ValueSet; 7],
    last_day_of_week: bool,
    nth_day_of_week: i32,
    last_day_of_month: bool,
    nearest_weekday: bool,
    last_day_offset: i32,
    year_given: bool,
    /// Quartz's `MAX_YEAR` (current year + 100): no fire time is produced after this year.
    max_year: i32,
}

/// Why an expression was rejected: which field, and a human-readable reason.
#[derive(Debug, Clone, PartialEq)]
pub struct CronError {
    /// One of "expression", "seconds", "minutes", "hours", "day-of-month", "month",
    /// "day-of-week", "year".
    pub field: &'static str,
    pub reason: String,
}

/// `<field>: <reason>`, or just the reason when it concerns the whole expression (the
/// caller already says it is about the expression).
impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field == "expression" {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for CronError {}

/// Parsed expressions kept per thread at most; the cache is emptied when full.
const PARSED_CACHE_MAX: usize = 4_096;

thread_local! {
    static PARSED: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<CronExpr>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

impl CronExpr {
    /// [`CronExpr::parse`], remembered per thread: claiming computes the next instant
    /// of thousands of triggers a second, most sharing a handful of expressions, and
    /// parsing was a tenth of the claim's time.
    pub fn parse_cached(expr: &str) -> Result<std::rc::Rc<CronExpr>, CronError> {
        if let Some(parsed) = PARSED.with(|cache| cache.borrow().get(expr).cloned()) {
            return Ok(parsed);
        }
        let parsed = std::rc::Rc::new(CronExpr::parse(expr)?);
        PARSED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= PARSED_CACHE_MAX {
                cache.clear();
            }
            cache.insert(expr.to_string(), parsed.clone());
        });
        Ok(parsed)
    }

    /// Parses an expression with Quartz's rules (case-insensitive, names JAN-DEC / SUN-SAT,
    /// `L`, `W`, `LW`, `L-n`, `nL`, `n#m`, optional year field).
    pub fn parse(expr: &str) -> Result<CronExpr, CronError> {
        let built = Builder::build(expr)?;
        Ok(CronExpr {
            source: expr.trim().to_string(),
            sets: built.sets,
            last_day_of_week: built.last_day_of_week,
            nth_day_of_week: built.nth_day_of_week,
            last_day_of_month: built.last_day_of_month,
            nearest_weekday: built.nearest_weekday,
            last_day_offset: built.last_day_offset,
            year_given: built.year_given,
            max_year: built.max_year,
        })
    }

    /// Next fire time strictly after `after`, at second precision, evaluated in `tz`
    /// (Quartz `getTimeAfter`). `None` means the expression never fires again.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let secs = self.time_after(after.timestamp_millis(), tz)?;
        DateTime::from_timestamp(secs, 0)
    }

    /// A plain-English description, e.g. "At 09:30:00, Monday through Friday".
    pub fn explain(&self) -> String {
        explain::describe(self)
    }

    /// The expression as given (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl FromStr for CronExpr {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

// ================================================================================================
// Field sets
// ================================================================================================

const SECOND: usize = 0;
const MINUTE: usize = 1;
const HOUR: usize = 2;
const DAY_OF_MONTH: usize = 3;
const MONTH: usize = 4;
const DAY_OF_WEEK: usize = 5;
const YEAR: usize = 6;

const FIELD_NAMES: [&str; 7] = [
    "seconds",
    "minutes",
    "hours",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];

/// Quartz stores `*` and `?` as these marker values inside the field sets, and some of its
/// logic depends on them being there (e.g. "day-of-month contains `?`"), so we do too.
const ALL_SPEC: i32 = 99;
const NO_SPEC: i32 = 98;

/// Beyond this year Quartz's `getTimeAfter` gives up unconditionally.
const QUARTZ_LAST_YEAR: i64 = 2999;

/// Sorted set of field values: the `TreeSet<Integer>` of Quartz.
#[derive(Debug, Clone, PartialEq, Default)]
struct ValueSet(Vec<i32>);

impl ValueSet {
    fn insert(&mut self, v: i32) {
        if let Err(pos) = self.0.binary_search(&v) {
            self.0.insert(pos, v);
        }
    }

    fn contains(&self, v: i32) -> bool {
        self.0.binary_search(&v).is_ok()
    }

    fn first(&self) -> Option<i32> {
        self.0.first().copied()
    }

    fn last(&self) -> Option<i32> {
        self.0.last().copied()
    }

    /// Smallest value >= `v` (`tailSet(v).first()`).
    fn ceiling(&self, v: i64) -> Option<i32> {
        let p = self.0.partition_point(|&x| i64::from(x) < v);
        self.0.get(p).copied()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values inside `lo..=hi`, without Quartz's marker values.
    fn real_values(&self, lo: i32, hi: i32) -> Vec<i32> {
        self.0
            .iter()
            .copied()
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    }
}

// ================================================================================================
// Parsing: a port of buildExpression / storeExpressionVals / checkNext / addToSet
// ================================================================================================

/// Quartz works on a Java (UTF-16) string; we keep the same indexing so that its
/// position-based parsing (e.g. "three letters after position i") behaves identically.
type JStr = [u16];

const fn ch(c: char) -> u16 {
    c as u16
}

fn is_digit(c: u16) -> bool {
    (ch('0')..=ch('9')).contains(&c)
}

fn is_upper(c: u16) -> bool {
    (ch('A')..=ch('Z')).contains(&c)
}

fn jstr_eq(s: &JStr, text: &str) -> bool {
    s.iter().copied().eq(text.encode_utf16())
}

fn to_text(s: &JStr) -> String {
    String::from_utf16_lossy(s)
}

fn describe_char(c: u16) -> String {
    format!("'{}'", String::from_utf16_lossy(&[c]))
}

/// `String.trim()`: strips every char <= U+0020 from both ends.
fn java_trim(s: &JStr) -> &JStr {
    let start = s.iter().position(|&c| c > 0x20).unwrap_or(s.len());
    let end = s.iter().rposition(|&c| c > 0x20).map_or(start, |p| p + 1);
    &s[start..end]
}

/// `Character.digit(c, 10)` for a UTF-16 unit: Java accepts every Unicode decimal digit.
fn java_digit(c: u16) -> Option<i32> {
    const ZEROS: [u16; 37] = [
        0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66,
        0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946,
        0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0,
        0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    ];
    ZEROS
        .iter()
        .find(|&&z| c >= z && c < z + 10)
        .map(|&z| i32::from(c - z))
}

/// `Integer.parseInt(s)`: optional sign, at least one digit, no overflow.
fn java_parse_int(s: &JStr) -> Option<i32> {
    let (negative, digits) = match s.first() {
        Some(&c) if c == ch('-') => (true, &s[1..]),
        Some(&c) if c == ch('+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &c in digits {
        value = value * 10 + i64::from(java_digit(c)?);
        if value > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i32::try_from(value).ok()
}

fn month_number(name: &JStr) -> Option<i32> {
    const NAMES: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    NAMES
        .iter()
        .position(|n| jstr_eq(name, n))
        .map(|p| p as i32 + 1)
}

fn day_of_week_number(name: &JStr) -> Option<i32> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    NAMES
        .iter()
        .position(|n| jstr_eq(name, n))
        .map(|p| p as i32 + 1)
}

/// `s.matches("^L-[0-9]*[W]?")`
fn is_last_day_offset(s: &JStr) -> bool {
    if s.len() < 2 || s[0] != ch('L') || s[1] != ch('-') {
        return false;
    }
    let rest = &s[2..];
    let rest = match rest.last() {
        Some(&c) if c == ch('W') => &rest[..rest.len() - 1],
        _ => rest,
    };
    rest.iter().all(|&c| is_digit(c))
}

/// The expression being built: Quartz's parser state.
struct Builder {
    sets: [ValueSet; 7],
    last_day_of_week: bool,
    nth_day_of_week: i32,
    last_day_of_month: bool,
    nearest_weekday: bool,
    last_day_offset: i32,
    year_given: bool,
    max_year: i32,
    /// The field currently being parsed (index into FIELD_NAMES).
    field: usize,
}

impl Builder {
    fn build(expr: &str) -> Result<Builder, CronError> {
        let upper: Vec<u16> = expr.to_uppercase().encode_utf16().collect();
        let mut b = Builder {
            sets: Default::default(),
            last_day_of_week: false,
            nth_day_of_week: 0,
            last_day_of_month: false,
            nearest_weekday: false,
            last_day_offset: 0,
            year_given: false,
            max_year: Utc::now().year() + 100,
            field: SECOND,
        };

        // Fields are separated by spaces and tabs only (StringTokenizer " \t"); tokens after
        // the seventh are ignored, as in Quartz.
        let tokens = upper
            .split(|&c| c == ch(' ') || c == ch('\t'))
            .filter(|t| !t.is_empty());
        let mut count = 0;
        for token in tokens {
            if count > YEAR {
                break;
            }
            b.field = count;
            b.store_field(java_trim(token))?;
            count += 1;
        }
        if count <= DAY_OF_WEEK {
            return Err(CronError {
                field: "expression",
                reason: format!(
                    "expected 6 or 7 fields (seconds minutes hours day-of-month month \
                     day-of-week [year]), found {count}"
                ),
            });
        }
        b.year_given = count > YEAR;
        if !b.year_given {
            b.field = YEAR;
            b.store_value(&[ch('*')])?;
        }
        b.check_day_fields()?;
        b.check_usable()?;
        Ok(b)
    }

    fn err(&self, reason: impl Into<String>) -> CronError {
        CronError {
            field: FIELD_NAMES[self.field],
            reason: reason.into(),
        }
    }

    fn set(&mut self) -> &mut ValueSet {
        &mut self.sets[self.field]
    }

    /// One whitespace-separated field: the token-level checks, then each comma-separated value.
    fn store_field(&mut self, token: &JStr) -> Result<(), CronError> {
        let has = |c: char| token.contains(&ch(c));
        let day_field = self.field == DAY_OF_MONTH || self.field == DAY_OF_WEEK;
        if day_field && has('L') && token.len() > 1 && has(',') {
            return Err(self.err("'L' cannot be combined with other values in a list"));
        }
        if self.field == DAY_OF_WEEK && token.iter().filter(|&&c| c == ch('#')).count() > 1 {
            return Err(self.err("only one 'day#n' value is allowed"));
        }
        for value in token.split(|&c| c == ch(',')).filter(|v| !v.is_empty()) {
            self.store_value(value)?;
        }
        Ok(())
    }

    /// `storeExpressionVals`: one comma-separated value. Like Quartz, characters after a
    /// complete value are ignored (e.g. `MONDAY` reads as `MON`, `5X` as `5`).
    fn store_value(&mut self, s: &JStr) -> Result<(), CronError> {
        let Some(&c) = s.first() else {
            return Ok(());
        };
        if is_upper(c) && !jstr_eq(s, "L") && !jstr_eq(s, "LW") && !is_last_day_offset(s) {
            return self.store_name(s);
        }
        if c == ch('?') {
            return self.store_no_spec(s);
        }
        if c == ch('*') || c == ch('/') {
            return self.store_all(s);
        }
        if c == ch('L') {
            return self.store_last(s);
        }
        if is_digit(c) {
            let mut val = i32::from(c - ch('0'));
            if s.len() == 1 {
                return self.add_to_set(val, -1, -1);
            }
            let mut i = 1;
            if is_digit(s[1]) {
                let (v, pos) = self.get_value(val, s, 1)?;
                val = v;
                i = pos;
            }
            return self.check_next(i, s, val);
        }
        Err(self.err(format!(
            "unexpected character {} in '{}'",
            describe_char(c),
            to_text(s)
        )))
    }

    /// Month names (JAN-DEC, ranges JAN-MAR) and day names (SUN-SAT, MON-FRI, FRI#3, FRIL).
    fn store_name(&mut self, s: &JStr) -> Result<(), CronError> {
        let name = |i: usize| s.get(i..i + 3);
        let (sval, eval) = match self.field {
            MONTH => {
                let bad = |b: &Builder, n: &JStr| {
                    b.err(format!("unknown month '{}' (expected JAN-DEC)", to_text(n)))
                };
                let first = name(0).ok_or_else(|| bad(self, s))?;
                let sval = month_number(first).ok_or_else(|| bad(self, first))?;
                let mut eval = -1;
                if s.get(3) == Some(&ch('-')) {
                    let second = name(4).ok_or_else(|| bad(self, &s[4..]))?;
                    eval = month_number(second).ok_or_else(|| bad(self, second))?;
                }
                (sval, eval)
            }
            DAY_OF_WEEK => {
                let bad = |b: &Builder, n: &JStr| {
                    b.err(format!("unknown day '{}' (expected SUN-SAT)", to_text(n)))
                };
                let first = name(0).ok_or_else(|| bad(self, s))?;
                let sval = day_of_week_number(first).ok_or_else(|| bad(self, first))?;
                let mut eval = -1;
                match s.get(3) {
                    Some(&c) if c == ch('-') => {
                        let second = name(4).ok_or_else(|| bad(self, &s[4..]))?;
                        eval = day_of_week_number(second).ok_or_else(|| bad(self, second))?;
                    }
                    Some(&c) if c == ch('#') => self.nth_day_of_week = self.parse_nth(&s[4..])?,
                    Some(&c) if c == ch('L') => self.last_day_of_week = true,
                    _ => {}
                }
                (sval, eval)
            }
            _ => {
                return Err(self.err(format!(
                    "names are only allowed in month and day-of-week, not '{}'",
                    to_text(s)
                )))
            }
        };
        let incr = if eval != -1 { 1 } else { 0 };
        self.add_to_set(sval, eval, incr)
    }

    /// The number after '#': which occurrence of the weekday in the month.
    fn parse_nth(&self, s: &JStr) -> Result<i32, CronError> {
        match java_parse_int(s) {
            Some(n) if (1..=5).contains(&n) => Ok(n),
            _ => Err(self.err(format!(
                "'#' must be followed by a number 1-5, not '{}'",
                to_text(s)
            ))),
        }
    }

    fn store_no_spec(&mut self, s: &JStr) -> Result<(), CronError> {
        // Quartz tolerates exactly one stray character after '?'.
        if s.len() > 2 {
            return Err(self.err(format!("'?' must stand alone, not '{}'", to_text(s))));
        }
        if self.field != DAY_OF_WEEK && self.field != DAY_OF_MONTH {
            return Err(self.err("'?' is only allowed in day-of-month and day-of-week"));
        }
        if self.field == DAY_OF_WEEK && !self.last_day_of_month {
            match self.sets[DAY_OF_MONTH].last() {
                None => return Err(self.err("day-of-month has no values")),
                Some(NO_SPEC) => {
                    return Err(CronError {
                        field: "expression",
                        reason: "'?' cannot be used in both day-of-month and day-of-week".into(),
                    })
                }
                Some(_) => {}
            }
        }
        self.add_to_set(NO_SPEC, -1, 0)
    }

    /// `*`, `*/n` and `/n`.
    fn store_all(&mut self, s: &JStr) -> Result<(), CronError> {
        if s.len() == 1 && s[0] == ch('*') {
            return self.add_to_set(ALL_SPEC, -1, 0);
        }
        let i = if s[0] == ch('*') { 1 } else { 0 };
        let incr = if s[i] == ch('/') {
            let step = &s[i + 1..];
            if step.is_empty() {
                return Err(self.err("'/' must be followed by a number"));
            }
            let incr = java_parse_int(step)
                .ok_or_else(|| self.err(format!("invalid step '{}'", to_text(step))))?;
            self.check_increment(incr)?;
            incr
        } else {
            1
        };
        self.add_to_set(ALL_SPEC, -1, incr)
    }

    /// `L`, `LW`, `L-n`, `L-nW` (only meaningful in the two day fields; elsewhere Quartz
    /// silently stores nothing, which `check_usable` then reports).
    fn store_last(&mut self, s: &JStr) -> Result<(), CronError> {
        match self.field {
            DAY_OF_MONTH => {
                self.last_day_of_month = true;
                let mut i = 1;
                if s.get(1) == Some(&ch('-')) {
                    let (offset, pos) = self.get_value(0, s, 2)?;
                    if offset > 30 {
                        return Err(self.err(format!(
                            "the offset in L-n must be at most 30, not {offset}"
                        )));
                    }
                    self.last_day_offset = offset;
                    i = pos;
                }
                if s.get(i) == Some(&ch('W')) {
                    // Deviation: Quartz accepts L-28W and beyond, but once the search reaches
                    // a month where that lands before the 1st (February) it loops forever.
                    if self.last_day_offset > 27 {
                        return Err(self.err(format!(
                            "L-{}W would fall before the 1st in February; with W the offset \
                             must be at most 27",
                            self.last_day_offset
                        )));
                    }
                    self.nearest_weekday = true;
                }
            }
            DAY_OF_WEEK => self.sets[DAY_OF_WEEK].insert(7),
            _ => {}
        }
        Ok(())
    }

    /// `getValue`: `prefix` followed by the ASCII digits starting at `i`. Returns the value
    /// and Quartz's next position (one past the end when the digits run to the end).
    fn get_value(&self, prefix: i32, s: &JStr, i: usize) -> Result<(i32, usize), CronError> {
        if i >= s.len() {
            return Err(self.err(format!("'{}' ends unexpectedly", to_text(s))));
        }
        let mut text = prefix.to_string();
        let mut i = i;
        while i < s.len() && is_digit(s[i]) {
            text.push(char::from(s[i] as u8));
            i += 1;
        }
        let pos = if i < s.len() { i } else { i + 1 };
        let value = text
            .parse::<i32>()
            .map_err(|_| self.err(format!("number '{text}' is too large")))?;
        Ok((value, pos))
    }

    /// `checkNext`: what follows a number — `L`, `W`, `#n`, `-end[/step]`, `/step` or nothing.
    fn check_next(&mut self, i: usize, s: &JStr, val: i32) -> Result<(), CronError> {
        let Some(&c) = s.get(i) else {
            return self.add_to_set(val, -1, -1);
        };
        if c == ch('L') {
            if self.field != DAY_OF_WEEK {
                return Err(self.err("the 'L' suffix is only allowed in day-of-week (e.g. 6L)"));
            }
            if !(1..=7).contains(&val) {
                return Err(self.err(format!("value {val} out of range 1-7 (SUN-SAT)")));
            }
            self.last_day_of_week = true;
            self.set().insert(val);
            return Ok(());
        }
        if c == ch('W') {
            if self.field != DAY_OF_MONTH {
                return Err(self.err("the 'W' suffix is only allowed in day-of-month (e.g. 15W)"));
            }
            // Deviation: Quartz accepts 0W, then loops forever in getTimeAfter.
            if !(1..=31).contains(&val) {
                return Err(self.err(format!("value {val} out of range 1-31")));
            }
            self.nearest_weekday = true;
            self.set().insert(val);
            return Ok(());
        }
        if c == ch('#') {
            if self.field != DAY_OF_WEEK {
                return Err(self.err("'#' is only allowed in day-of-week (e.g. 6#3)"));
            }
            self.nth_day_of_week = self.parse_nth(&s[i + 1..])?;
            self.set().insert(val);
            return Ok(());
        }
        if c == ch('-') {
            return self.store_range(i + 1, s, val);
        }
        if c == ch('/') {
            let Some(&d) = s.get(i + 1) else {
                return Err(self.err("'/' must be followed by a number"));
            };
            let v2 = self.single_digit(d)?;
            if i + 2 >= s.len() {
                self.check_increment(v2)?;
                return self.add_to_set(val, -1, v2);
            }
            if !is_digit(s[i + 2]) {
                return Err(self.err(format!(
                    "unexpected character {} after '/'",
                    describe_char(s[i + 2])
                )));
            }
            let (v3, _) = self.get_value(v2, s, i + 2)?;
            self.check_increment(v3)?;
            return self.add_to_set(val, -1, v3);
        }
        // Anything else after the number is ignored (as in Quartz).
        self.add_to_set(val, -1, 0)
    }

    /// The `end[/step]` part of `start-end[/step]`; `i` is just after the '-'.
    /// Note: Quartz does not range-check the step of a range.
    fn store_range(&mut self, i: usize, s: &JStr, val: i32) -> Result<(), CronError> {
        let Some(&c) = s.get(i) else {
            return Err(self.err(format!("range '{}' has no end", to_text(s))));
        };
        let v = self.single_digit(c)?;
        let mut i = i + 1;
        if i >= s.len() {
            return self.add_to_set(val, v, 1);
        }
        let mut end = v;
        if is_digit(s[i]) {
            let (e, pos) = self.get_value(v, s, i)?;
            end = e;
            i = pos;
        }
        if s.get(i) != Some(&ch('/')) {
            return self.add_to_set(val, end, 1);
        }
        let Some(&d) = s.get(i + 1) else {
            return Err(self.err("'/' must be followed by a number"));
        };
        let v2 = self.single_digit(d)?;
        let step = match s.get(i + 2) {
            Some(&c) if is_digit(c) => self.get_value(v2, s, i + 2)?.0,
            _ => v2,
        };
        self.add_to_set(val, end, step)
    }

    /// `Integer.parseInt(String.valueOf(c))`
    fn single_digit(&self, c: u16) -> Result<i32, CronError> {
        java_digit(c)
            .ok_or_else(|| self.err(format!("expected a number, found {}", describe_char(c))))
    }

    /// `checkIncrementRange`
    fn check_increment(&self, incr: i32) -> Result<(), CronError> {
        let max = match self.field {
            SECOND | MINUTE => 59,
            HOUR => 23,
            DAY_OF_MONTH => 31,
            DAY_OF_WEEK => 7,
            MONTH => 12,
            _ => return Ok(()),
        };
        if incr > max {
            return Err(self.err(format!("step {incr} is too large (at most {max})")));
        }
        Ok(())
    }

    /// `addToSet`: validates, then adds a single value (`incr` 0 or -1) or the stepped range
    /// `val..=end` (defaults: whole field), wrapping around for ranges like `22-2` or `FRI-MON`.
    fn add_to_set(&mut self, val: i32, end: i32, incr: i32) -> Result<(), CronError> {
        self.check_range(val, end)?;
        let field = self.field;
        if (incr == 0 || incr == -1) && val != ALL_SPEC {
            let v = if val != -1 { val } else { NO_SPEC };
            if field != YEAR || v <= self.max_year {
                self.set().insert(v);
            }
            return Ok(());
        }

        let mut incr = incr;
        if val == ALL_SPEC && incr <= 0 {
            incr = 1;
            self.set().insert(ALL_SPEC); // marker, the values are filled in too
        }
        let (min, max_value, wrap) = match field {
            SECOND | MINUTE => (0, 59, 60),
            HOUR => (0, 23, 24),
            DAY_OF_MONTH => (1, 31, 31),
            MONTH => (1, 12, 12),
            DAY_OF_WEEK => (1, 7, 7),
            _ => (1970, self.max_year, 0),
        };
        let start = if val == -1 || val == ALL_SPEC {
            min
        } else {
            val
        };
        let mut stop = if end == -1 { max_value } else { end };
        let mut modulus = None;
        if stop < start {
            if field == YEAR {
                return Err(self.err(format!("range {start}-{stop} runs backwards")));
            }
            modulus = Some(wrap);
            stop += wrap;
        }
        // Years after max_year never fire, so they need not be stored (and "2000-2000000000"
        // must not allocate two billion values).
        let stop = if field == YEAR {
            stop.min(self.max_year)
        } else {
            stop
        };
        let one_based = matches!(field, MONTH | DAY_OF_WEEK | DAY_OF_MONTH);
        let mut i = i64::from(start);
        while i <= i64::from(stop) {
            let v = match modulus {
                None => i as i32,
                Some(m) => {
                    let r = (i % i64::from(m)) as i32;
                    if r == 0 && one_based {
                        m
                    } else {
                        r
                    }
                }
            };
            self.set().insert(v);
            i += i64::from(incr.max(1));
        }
        Ok(())
    }

    /// The range checks at the top of `addToSet`.
    fn check_range(&self, val: i32, end: i32) -> Result<(), CronError> {
        let (lo, hi, names) = match self.field {
            SECOND | MINUTE => (0, 59, ""),
            HOUR => (0, 23, ""),
            DAY_OF_MONTH => (1, 31, ""),
            MONTH => (1, 12, " (JAN-DEC)"),
            DAY_OF_WEEK => (1, 7, " (SUN-SAT)"),
            _ => return Ok(()),
        };
        // The markers pass unchecked in Quartz (so "99" means "*", and "98" in a day field
        // means "?"); which markers depends on the field.
        let marker =
            val == ALL_SPEC || (val == NO_SPEC && matches!(self.field, DAY_OF_MONTH | DAY_OF_WEEK));
        if marker {
            return Ok(());
        }
        // Day-of-week only rejects 0 at the low end (values are never negative here).
        let low_bad = if self.field == DAY_OF_WEEK {
            val == 0
        } else {
            val < lo
        };
        let bad = if low_bad || val > hi {
            val
        } else if end > hi {
            end
        } else {
            return Ok(());
        };
        Err(self.err(format!("value {bad} out of range {lo}-{hi}{names}")))
    }

    /// Quartz needs exactly one of day-of-month and day-of-week to be `?`.
    fn check_day_fields(&self) -> Result<(), CronError> {
        let dom_given = !self.sets[DAY_OF_MONTH].contains(NO_SPEC);
        let dow_given = !self.sets[DAY_OF_WEEK].contains(NO_SPEC);
        if dom_given && dow_given {
            return Err(CronError {
                field: "expression",
                reason: "specifying both day-of-month and day-of-week is not supported; \
                         use '?' in one of them"
                    .into(),
            });
        }
        if !dom_given && !dow_given {
            return Err(CronError {
                field: "expression",
                reason: "'?' cannot be used in both day-of-month and day-of-week".into(),
            });
        }
        Ok(())
    }

    /// Deviation from Quartz: reject expressions Quartz accepts but cannot evaluate (its
    /// `getTimeAfter` throws NoSuchElementException because a field has no values).
    fn check_usable(&self) -> Result<(), CronError> {
        let empty = |field: usize| CronError {
            field: FIELD_NAMES[field],
            reason: "no values (a field of only commas, or 'L' outside the day fields)".into(),
        };
        for field in [SECOND, MINUTE, HOUR] {
            if self.sets[field].is_empty() {
                return Err(empty(field));
            }
        }
        let dom_active = !self.sets[DAY_OF_MONTH].contains(NO_SPEC);
        if dom_active && !self.last_day_of_month && self.sets[DAY_OF_MONTH].is_empty() {
            return Err(empty(DAY_OF_MONTH));
        }
        if !dom_active && self.sets[DAY_OF_WEEK].is_empty() {
            return Err(empty(DAY_OF_WEEK));
        }
        // Quartz never reaches the month step when the day-of-week rule can never match, so
        // it returns "never" rather than failing; keep accepting that case.
        if self.sets[MONTH].is_empty()
            && !never_matching_nth(
                self.nth_day_of_week,
                self.last_day_of_week,
                dom_active,
                &self.sets[DAY_OF_WEEK],
            )
        {
            return Err(empty(MONTH));
        }
        Ok(())
    }
}

/// `n#m` with a weekday value above 7 (Quartz does not range-check values before '#'):
/// Quartz's search keeps moving forward and never fires.
fn never_matching_nth(nth: i32, last_dow: bool, dom_active: bool, dow: &ValueSet) -> bool {
    !dom_active && !last_dow && nth != 0 && dow.first().is_some_and(|d| d > 7)
}

// ================================================================================================
// java.util.GregorianCalendar emulation (lenient fields + Java's local-time resolution)
// ================================================================================================

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12, day may be out of range).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn last_day_of_month(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// chrono-tz's transition tables stop in 2099, while Java keeps applying the zone's last
/// rule. For later years we look up an earlier year with the same calendar (leap year and
/// weekday of 1 January), where rule-based transitions fall on the same dates.
fn table_shift(secs: i64) -> i64 {
    const LAST_TABLE_YEAR: i64 = 2099;
    let (year, _, _) = civil_from_days(secs.div_euclid(86_400));
    if year <= LAST_TABLE_YEAR {
        return 0;
    }
    let jan1 = days_from_civil(year, 1, 1);
    let weekday = jan1.rem_euclid(7);
    let leap = is_leap_year(year);
    (LAST_TABLE_YEAR - 27..=LAST_TABLE_YEAR)
        .map(|y| days_from_civil(y, 1, 1))
        .zip(LAST_TABLE_YEAR - 27..=LAST_TABLE_YEAR)
        .find(|&(d, y)| d.rem_euclid(7) == weekday && is_leap_year(y) == leap)
        .map_or(0, |(d, _)| (d - jan1) * 86_400)
}

fn naive(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc())
}

/// Offset (seconds east of UTC) in effect at the instant `utc`.
fn offset_at_utc(tz: Tz, utc: i64) -> i64 {
    let Some(n) = naive(utc + table_shift(utc)) else {
        return 0;
    };
    i64::from(tz.offset_from_utc_datetime(&n).fix().local_minus_utc())
}

/// Offset Java's `ZoneInfo.getOffsetsByWall` uses for the local wall time `wall`: the offset
/// of the last transition whose local start is <= `wall`. In an overlap that is the later
/// (standard-time) occurrence; in a gap, the offset from before the gap.
fn offset_for_wall(tz: Tz, wall: i64) -> i64 {
    let shift = table_shift(wall);
    let Some(n) = naive(wall + shift) else {
        return 0;
    };
    let fix = |o: &<Tz as TimeZone>::Offset| i64::from(o.fix().local_minus_utc());
    match tz.offset_from_local_datetime(&n) {
        chrono::LocalResult::Single(o) => fix(&o),
        chrono::LocalResult::Ambiguous(a, b) => fix(&a).min(fix(&b)),
        chrono::LocalResult::None => GapInfo::new(&n, &tz)
            .and_then(|g| g.begin)
            .map(|(_, o)| fix(&o))
            .unwrap_or_else(|| offset_at_utc(tz, wall - 86_400)),
    }
}

/// The calendar fields Quartz touches. Values may be out of range (lenient), e.g. minute 60,
/// day 0 or month 12; they are normalised when the calendar is next read.
#[derive(Debug, Clone, Copy)]
struct Fields {
    year: i64,
    /// 0-based, as in java.util.Calendar.
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

/// A lenient GregorianCalendar at second precision: `set` only records a field; the next read
/// recomputes the instant from all fields (resolving the wall time in the zone the Java way)
/// and then every field from that instant.
struct JavaCalendar {
    tz: Tz,
    /// Seconds since the epoch; valid when `!dirty`.
    time: i64,
    fields: Fields,
    dirty: bool,
}

impl JavaCalendar {
    fn at(tz: Tz, time: i64) -> JavaCalendar {
        JavaCalendar {
            tz,
            time,
            fields: Self::fields_at(tz, time),
            dirty: false,
        }
    }

    fn from_fields(tz: Tz, fields: Fields) -> JavaCalendar {
        JavaCalendar {
            tz,
            time: 0,
            fields,
            dirty: true,
        }
    }

    fn fields_at(tz: Tz, time: i64) -> Fields {
        let local = time + offset_at_utc(tz, time);
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        Fields {
            year,
            month: month - 1,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        let f = self.fields;
        let year = f.year.saturating_add(f.month.div_euclid(12));
        let days = days_from_civil(year, f.month.rem_euclid(12) + 1, 1).saturating_add(f.day - 1);
        let wall = days
            .saturating_mul(86_400)
            .saturating_add(f.hour * 3600 + f.minute * 60 + f.second);
        self.time = wall - offset_for_wall(self.tz, wall);
        self.fields = Self::fields_at(self.tz, self.time);
        self.dirty = false;
    }

    fn time(&mut self) -> i64 {
        self.sync();
        self.time
    }

    fn get(&mut self) -> Fields {
        self.sync();
        self.fields
    }

    /// DAY_OF_WEEK: 1 = Sunday ... 7 = Saturday.
    fn day_of_week(&mut self) -> i64 {
        let f = self.get();
        let days = days_from_civil(f.year, f.month + 1, f.day);
        (days + 4).rem_euclid(7) + 1
    }

    fn set(&mut self, update: impl FnOnce(&mut Fields)) {
        update(&mut self.fields);
        self.dirty = true;
    }

    /// `add(Calendar.YEAR, 1)`: normalise, bump the year, pin the day to the month length.
    fn add_year(&mut self) {
        self.sync();
        let f = &mut self.fields;
        f.year += 1;
        f.day = f.day.min(last_day_of_month(f.month + 1, f.year));
        self.dirty = true;
    }

    /// Quartz's `setCalendarHour`: if the hour does not exist (DST gap), take the next one.
    fn set_hour_dst_aware(&mut self, hour: i64) {
        self.set(|f| f.hour = hour);
        if self.get().hour != hour && hour != 24 {
            self.set(|f| f.hour = hour + 1);
        }
    }

    /// Midnight-reset used whenever Quartz moves to another day/month/year.
    fn set_date(&mut self, year: Option<i64>, month: i64, day: i64) {
        self.set(|f| {
            f.second = 0;
            f.minute = 0;
            f.hour = 0;
            f.day = day;
            f.month = month;
            if let Some(y) = year {
                f.year = y;
            }
        });
    }
}

// ================================================================================================
// Next-time search: a port of getTimeAfter
// ================================================================================================

/// What one pass of the search loop decided.
enum Step {
    /// The calendar was moved; start the loop again.
    Again,
    /// This field matches; go on to the next one.
    Next,
    /// Never fires again.
    Never,
}

/// Quartz's loop ends by year 2999 at the latest (or cycles, see `time_after`); this cap only
/// guards against a bug turning into a hang.
const MAX_ITERATIONS: u32 = 200_000;

impl CronExpr {
    fn time_after(&self, after_ms: i64, tz: Tz) -> Option<i64> {
        if never_matching_nth(
            self.nth_day_of_week,
            self.last_day_of_week,
            !self.sets[DAY_OF_MONTH].contains(NO_SPEC),
            &self.sets[DAY_OF_WEEK],
        ) {
            return None;
        }
        // Start one second later and drop the milliseconds. Quartz then re-resolves the
        // start from its wall-clock fields, which matters inside a DST overlap.
        let after_time_ms = after_ms.checked_add(1000)?;
        let mut cl = JavaCalendar::at(tz, after_time_ms.div_euclid(1000));
        cl.dirty = true; // Quartz's set(MILLISECOND, 0): recompute from the fields
        let after_secs = after_time_ms.div_euclid(1000);

        // Brent's cycle detection on the loop state (the calendar's instant at the top of the
        // loop is all the state there is): Quartz loops forever when a `W` day does not exist
        // locally (Pacific/Apia skipped 2011-12-30). There is no Quartz answer to match, so we
        // skip that day instead of hanging.
        let (mut tortoise, mut power, mut lambda) = (i64::MIN, 1u32, 0u32);
        for _ in 0..MAX_ITERATIONS {
            let now = cl.time();
            if now == tortoise {
                let f = cl.get();
                cl.set_date(None, f.month, f.day + 1);
                (tortoise, power, lambda) = (i64::MIN, 1, 0);
                continue;
            }
            lambda += 1;
            if lambda == power {
                (tortoise, power, lambda) = (now, power.saturating_mul(2), 0);
            }
            if cl.get().year > QUARTZ_LAST_YEAR {
                return None;
            }
            match self.match_time_of_day(&mut cl)? {
                Step::Again => continue,
                Step::Never => return None,
                Step::Next => {}
            }
            let day_step = if self.sets[DAY_OF_MONTH].contains(NO_SPEC) {
                self.match_day_of_week(&mut cl)?
            } else {
                self.match_day_of_month(&mut cl, after_secs)?
            };
            match day_step {
                Step::Again => continue,
                Step::Never => return None,
                Step::Next => {}
            }
            match self.match_month_and_year(&mut cl)? {
                Step::Again => continue,
                Step::Never => return None,
                Step::Next => return Some(cl.time()),
            }
        }
        None
    }

    /// Seconds, minutes and hours. `None` only for an empty set (rejected by the parser).
    fn match_time_of_day(&self, cl: &mut JavaCalendar) -> Option<Step> {
        let [seconds, minutes, hours, ..] = &self.sets;

        let f = cl.get();
        let mut min = f.minute;
        let sec = match seconds.ceiling(f.second) {
            Some(s) => i64::from(s),
            None => {
                min += 1;
                cl.set(|f| f.minute = min);
                i64::from(seconds.first()?)
            }
        };
        cl.set(|f| f.second = sec);

        let f = cl.get();
        let (mut min, mut hr) = (f.minute, f.hour);
        let mut t = -1;
        match minutes.ceiling(min) {
            Some(m) => {
                t = min;
                min = i64::from(m);
            }
            None => {
                min = i64::from(minutes.first()?);
                hr += 1;
            }
        }
        if min != t {
            cl.set(|f| {
                f.second = 0;
                f.minute = min;
            });
            cl.set_hour_dst_aware(hr);
            return Some(Step::Again);
        }
        cl.set(|f| f.minute = min);

        let f = cl.get();
        let (mut hr, mut day) = (f.hour, f.day);
        let mut t = -1;
        match hours.ceiling(hr) {
            Some(h) => {
                t = hr;
                hr = i64::from(h);
            }
            None => {
                hr = i64::from(hours.first()?);
                day += 1;
            }
        }
        if hr != t {
            cl.set(|f| {
                f.second = 0;
                f.minute = 0;
                f.day = day;
            });
            cl.set_hour_dst_aware(hr);
            return Some(Step::Again);
        }
        cl.set(|f| f.hour = hr);
        Some(Step::Next)
    }

    /// Day-of-month rules: plain days, `L`, `L-n`, `LW`, `nW`.
    fn match_day_of_month(&self, cl: &mut JavaCalendar, after_secs: i64) -> Option<Step> {
        let dom = &self.sets[DAY_OF_MONTH];
        let f = cl.get();
        let (sec, min, hr) = (f.second, f.minute, f.hour);
        let mut day = f.day;
        let mut mon = f.month + 1;
        let mut tmon = mon;
        let t;

        if self.last_day_of_month && !self.nearest_weekday {
            t = day;
            day = last_day_of_month(mon, f.year) - i64::from(self.last_day_offset);
            if t > day {
                mon += 1;
                if mon > 12 {
                    mon = 1;
                    tmon = 3333; // make the "month changed" test below succeed
                    cl.add_year();
                }
                day = 1;
            }
        } else if self.nearest_weekday {
            t = day;
            let target = if self.last_day_of_month {
                last_day_of_month(mon, f.year) - i64::from(self.last_day_offset)
            } else {
                i64::from(dom.first()?)
            };
            // Quartz probes the weekday in a second calendar, then moves that calendar to the
            // candidate day at the current time of day (its YEAR stays as first normalised).
            let mut tcal = JavaCalendar::from_fields(
                cl.tz,
                Fields {
                    year: f.year,
                    month: mon - 1,
                    day: target,
                    hour: 0,
                    minute: 0,
                    second: 0,
                },
            );
            let dow = tcal.day_of_week();
            day = nearest_weekday(target, dow, last_day_of_month(mon, f.year));
            tcal.set(|t| {
                t.second = sec;
                t.minute = min;
                t.hour = hr;
                t.day = day;
                t.month = mon - 1;
            });
            // Compared at second precision (Quartz compares against the current wall-clock
            // millisecond here, which only matters when `after` has a fraction of a second).
            if tcal.time() < after_secs {
                day = if self.last_day_of_month {
                    1
                } else {
                    i64::from(dom.first()?)
                };
                mon += 1;
            }
        } else {
            t = day;
            match dom.ceiling(day) {
                Some(d) => {
                    day = i64::from(d);
                    // don't run past the end of a short month such as February
                    if day > last_day_of_month(mon, f.year) {
                        day = i64::from(dom.first()?);
                        mon += 1;
                    }
                }
                None => {
                    day = i64::from(dom.first()?);
                    mon += 1;
                }
            }
        }

        if day != t || mon != tmon {
            cl.set_date(None, mon - 1, day);
            return Some(Step::Again);
        }
        cl.set(|f| f.day = day);
        Some(Step::Next)
    }

    /// Day-of-week rules: plain weekdays, `nL` (last x of the month), `n#m` (m-th x).
    fn match_day_of_week(&self, cl: &mut JavaCalendar) -> Option<Step> {
        let dow_set = &self.sets[DAY_OF_WEEK];
        let f = cl.get();
        let mut day = f.day;
        let mon = f.month + 1;
        let last_day = last_day_of_month(mon, f.year);
        let c_dow = cl.day_of_week();
        let days_to = |dow: i64| {
            if c_dow < dow {
                dow - c_dow
            } else if c_dow > dow {
                dow + (7 - c_dow)
            } else {
                0
            }
        };

        if self.last_day_of_week {
            let mut days_to_add = days_to(i64::from(dow_set.first()?));
            if day + days_to_add > last_day {
                cl.set_date(None, mon, 1); // already past the last one: next month
                return Some(Step::Again);
            }
            while day + days_to_add + 7 <= last_day {
                days_to_add += 7;
            }
            day += days_to_add;
            if days_to_add > 0 {
                cl.set_date(None, mon - 1, day);
                return Some(Step::Again);
            }
        } else if self.nth_day_of_week != 0 {
            let mut days_to_add = days_to(i64::from(dow_set.first()?));
            let day_shifted = days_to_add > 0;
            day += days_to_add;
            let mut week_of_month = day / 7;
            if day % 7 > 0 {
                week_of_month += 1;
            }
            days_to_add = (i64::from(self.nth_day_of_week) - week_of_month) * 7;
            day += days_to_add;
            if days_to_add < 0 || day > last_day {
                cl.set_date(None, mon, 1);
                return Some(Step::Again);
            } else if days_to_add > 0 || day_shifted {
                cl.set_date(None, mon - 1, day);
                return Some(Step::Again);
            }
        } else {
            let dow = dow_set
                .ceiling(c_dow)
                .or_else(|| dow_set.first())
                .map(i64::from)?;
            let days_to_add = days_to(dow);
            if day + days_to_add > last_day {
                cl.set_date(None, mon, 1);
                return Some(Step::Again);
            } else if days_to_add > 0 {
                cl.set_date(None, mon - 1, day + days_to_add);
                return Some(Step::Again);
            }
        }
        cl.set(|f| f.day = day);
        Some(Step::Next)
    }

    fn match_month_and_year(&self, cl: &mut JavaCalendar) -> Option<Step> {
        let months = &self.sets[MONTH];
        let years = &self.sets[YEAR];
        let f = cl.get();
        let mut mon = f.month + 1;
        let mut year = f.year;
        if year > i64::from(self.max_year) {
            return Some(Step::Never);
        }
        let mut t = -1;
        match months.ceiling(mon) {
            Some(m) => {
                t = mon;
                mon = i64::from(m);
            }
            None => {
                mon = i64::from(months.first()?);
                year += 1;
            }
        }
        if mon != t {
            cl.set_date(Some(year), mon - 1, 1);
            return Some(Step::Again);
        }
        cl.set(|f| f.month = mon - 1);

        let year = cl.get().year;
        match years.ceiling(year) {
            Some(y) if i64::from(y) == year => {
                cl.set(|f| f.year = year);
                Some(Step::Next)
            }
            Some(y) => {
                cl.set_date(Some(i64::from(y)), 0, 1);
                Some(Step::Again)
            }
            None => Some(Step::Never),
        }
    }
}

/// The `W` adjustment: the weekday nearest `day`, never crossing into another month
/// (1st on a Saturday moves to Monday the 3rd; last day on a Sunday moves to Friday).
fn nearest_weekday(day: i64, dow: i64, last_day: i64) -> i64 {
    const SUNDAY: i64 = 1;
    const SATURDAY: i64 = 7;
    match dow {
        SATURDAY if day == 1 => day + 2,
        SATURDAY => day - 1,
        SUNDAY if day == last_day => day - 2,
        SUNDAY => day + 1,
        _ => day,
    }
}

// ================================================================================================
// Explain
// ================================================================================================

mod explain {
    use super::*;

    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const ORDINALS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];

    /// The shape of a field's values, for wording.
    enum Shape {
        Every,
        One(i32),
        Range(i32, i32),
        Step { start: i32, step: i32 },
        List(Vec<i32>),
    }

    fn shape(values: &[i32], lo: i32, hi: i32) -> Shape {
        match values {
            [] => Shape::List(vec![]),
            [v] => Shape::One(*v),
            _ if values.len() as i32 == hi - lo + 1 => Shape::Every,
            [a, b, ..] => {
                let step = b - a;
                let regular = values.windows(2).all(|w| w[1] - w[0] == step);
                let last = values[values.len() - 1];
                // A wrapping range such as 22-2 or NOV-FEB: one gap, touching both ends.
                let gaps: Vec<usize> = (1..values.len())
                    .filter(|&i| values[i] - values[i - 1] > 1)
                    .collect();
                if regular && step == 1 {
                    Shape::Range(*a, last)
                } else if regular && (values.len() > 2 || *a == lo) && last + step > hi {
                    Shape::Step { start: *a, step }
                } else if values.len() > 2 && gaps.len() == 1 && *a == lo && last == hi {
                    Shape::Range(values[gaps[0]], values[gaps[0] - 1])
                } else {
                    Shape::List(values.to_vec())
                }
            }
        }
    }

    fn join(items: &[String]) -> String {
        match items {
            [] => String::new(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {}", rest.join(", "), last),
        }
    }

    fn plural(n: i32, unit: &str) -> String {
        if n == 1 {
            format!("every {unit}")
        } else {
            format!("every {n} {unit}s")
        }
    }

    /// Seconds/minutes/hours phrase for fields that are not a single value.
    fn unit_phrase(shape: &Shape, unit: &str, lo: i32) -> String {
        match shape {
            Shape::Every => format!("every {unit}"),
            Shape::One(v) => format!("at {unit} {v}"),
            Shape::Range(a, b) => format!("every {unit} from {a} through {b}"),
            Shape::Step { start, step } if *start == lo => plural(*step, unit),
            Shape::Step { start, step } => {
                format!("{}, starting at {unit} {start}", plural(*step, unit))
            }
            Shape::List(v) => {
                format!(
                    "at {unit}s {}",
                    join(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>())
                )
            }
        }
    }

    fn time_phrase(e: &CronExpr) -> String {
        let s = e.sets[SECOND].real_values(0, 59);
        let m = e.sets[MINUTE].real_values(0, 59);
        let h = e.sets[HOUR].real_values(0, 23);
        let (ss, ms, hs) = (shape(&s, 0, 59), shape(&m, 0, 59), shape(&h, 0, 23));

        // A handful of exact times reads best as a list: "At 10:15:00 and 14:15:00".
        if let Shape::One(sec) = ss {
            let countable = |sh: &Shape| matches!(sh, Shape::One(_) | Shape::List(_));
            if countable(&ms) && countable(&hs) && m.len() * h.len() <= 8 {
                let times: Vec<String> = h
                    .iter()
                    .flat_map(|hr| {
                        m.iter()
                            .map(move |min| format!("{hr:02}:{min:02}:{sec:02}"))
                    })
                    .collect();
                return format!("At {}", join(&times));
            }
        }
        if let (Shape::One(sec), Shape::One(min)) = (&ss, &ms) {
            let base = match (min, sec) {
                (0, 0) => "Every hour".to_string(),
                (m, 0) => format!("At {m} minutes past the hour"),
                (m, s) => format!("At {m:02}:{s:02} past the hour"),
            };
            return match (&hs, *min == 0 && *sec == 0) {
                (Shape::Every, _) => base,
                (Shape::Step { .. }, true) => capitalize(&hour_phrase(&hs)),
                _ => format!("{base}, {}", hour_phrase(&hs)),
            };
        }

        let mut parts = Vec::new();
        match (&ss, &ms) {
            (Shape::One(0), Shape::Every) => parts.push("every minute".to_string()),
            (Shape::One(0), _) => parts.push(unit_phrase(&ms, "minute", 0)),
            (Shape::One(sec), _) => {
                parts.push(format!("at second {sec}"));
                parts.push(unit_phrase(&ms, "minute", 0));
            }
            (_, Shape::Every) => parts.push(unit_phrase(&ss, "second", 0)),
            (_, _) => {
                parts.push(unit_phrase(&ss, "second", 0));
                parts.push(match &ms {
                    Shape::One(v) => format!("at minute {v}"),
                    other => unit_phrase(other, "minute", 0),
                });
            }
        }
        if !matches!(hs, Shape::Every) {
            parts.push(hour_phrase(&hs));
        }
        capitalize(&parts.join(", "))
    }

    fn capitalize(text: &str) -> String {
        let mut chars = text.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    fn hour_phrase(hs: &Shape) -> String {
        match hs {
            Shape::Every => "every hour".into(),
            Shape::One(h) => format!("between {h:02}:00 and {h:02}:59"),
            Shape::Range(a, b) => format!("between {a:02}:00 and {b:02}:59"),
            Shape::Step { start, step } if *start == 0 => plural(*step, "hour"),
            Shape::Step { start, step } => {
                format!("{}, starting at {start:02}:00", plural(*step, "hour"))
            }
            Shape::List(v) => format!(
                "during hours {}",
                join(&v.iter().map(|h| format!("{h:02}")).collect::<Vec<_>>())
            ),
        }
    }

    fn ordinal_day(d: i32) -> String {
        let suffix = match (d % 10, d % 100) {
            (1, x) if x != 11 => "st",
            (2, x) if x != 12 => "nd",
            (3, x) if x != 13 => "rd",
            _ => "th",
        };
        format!("{d}{suffix}")
    }

    fn named(values: &Shape, names: &[&str], lo: i32, what: &str) -> Option<String> {
        let name = |v: i32| {
            usize::try_from(v - lo)
                .ok()
                .and_then(|i| names.get(i))
                .map_or_else(|| v.to_string(), |n| n.to_string())
        };
        Some(match values {
            Shape::Every => return None,
            Shape::One(v) => format!("only in {}", name(*v)),
            Shape::Range(a, b) => format!("{} through {}", name(*a), name(*b)),
            Shape::Step { start, step } => {
                format!("every {step} {what}s, starting in {}", name(*start))
            }
            Shape::List(v) => {
                format!(
                    "only in {}",
                    join(&v.iter().map(|x| name(*x)).collect::<Vec<_>>())
                )
            }
        })
    }

    fn day_phrase(e: &CronExpr) -> Option<String> {
        let dom_active = !e.sets[DAY_OF_MONTH].contains(NO_SPEC);
        if dom_active {
            let offset = e.last_day_offset;
            if e.last_day_of_month {
                return Some(match (e.nearest_weekday, offset) {
                    (false, 0) => "on the last day of the month".into(),
                    (true, 0) => "on the last weekday of the month".into(),
                    (false, n) => format!("{n} days before the last day of the month"),
                    (true, n) => {
                        format!("on the weekday nearest {n} days before the last day of the month")
                    }
                });
            }
            let days = e.sets[DAY_OF_MONTH].real_values(0, 31);
            if e.nearest_weekday {
                let d = days.first().copied().unwrap_or(1);
                return Some(format!(
                    "on the weekday nearest the {} of the month",
                    ordinal_day(d)
                ));
            }
            return match shape(&days, 1, 31) {
                Shape::Every => None,
                Shape::One(d) => Some(format!("on the {} of the month", ordinal_day(d))),
                Shape::Range(a, b) => Some(format!(
                    "on the {} through {} of the month",
                    ordinal_day(a),
                    ordinal_day(b)
                )),
                Shape::Step { start, step } => Some(format!(
                    "every {step} days of the month, starting on the {}",
                    ordinal_day(start)
                )),
                Shape::List(v) => Some(format!(
                    "on the {} of the month",
                    join(&v.iter().map(|d| ordinal_day(*d)).collect::<Vec<_>>())
                )),
            };
        }
        let days = e.sets[DAY_OF_WEEK].real_values(1, 7);
        let day_name = |d: i32| DAYS.get((d - 1).max(0) as usize).copied().unwrap_or("?");
        if e.last_day_of_week {
            let d = days.first().copied().unwrap_or(7);
            return Some(format!("on the last {} of the month", day_name(d)));
        }
        if e.nth_day_of_week != 0 {
            let Some(d) = days.first() else {
                return Some("never".into());
            };
            let nth = ORDINALS
                .get((e.nth_day_of_week - 1).max(0) as usize)
                .copied()
                .unwrap_or("nth");
            return Some(format!("on the {nth} {} of the month", day_name(*d)));
        }
        match shape(&days, 1, 7) {
            Shape::Every => None,
            Shape::One(d) => Some(format!("only on {}", day_name(d))),
            Shape::Range(a, b) => Some(format!("{} through {}", day_name(a), day_name(b))),
            Shape::Step { .. } | Shape::List(_) => Some(format!(
                "only on {}",
                join(
                    &days
                        .iter()
                        .map(|d| day_name(*d).to_string())
                        .collect::<Vec<_>>()
                )
            )),
        }
    }

    fn year_phrase(e: &CronExpr) -> Option<String> {
        if !e.year_given {
            return None;
        }
        let years = e.sets[YEAR].real_values(1970, e.max_year);
        Some(match shape(&years, 1970, e.max_year) {
            Shape::Every => return None,
            Shape::List(v) if v.is_empty() => "in no year up to the scheduling limit".into(),
            Shape::One(y) => format!("in {y}"),
            Shape::Range(a, b) => format!("from {a} through {b}"),
            Shape::Step { start, step } => format!("every {step} years, starting in {start}"),
            Shape::List(v) => format!(
                "in {}",
                join(&v.iter().map(|y| y.to_string()).collect::<Vec<_>>())
            ),
        })
    }

    pub(super) fn describe(e: &CronExpr) -> String {
        let mut out = time_phrase(e);
        let months = e.sets[MONTH].real_values(1, 12);
        let parts = [
            day_phrase(e),
            named(&shape(&months, 1, 12), &MONTHS, 1, "month"),
            year_phrase(e),
        ];
        for part in parts.into_iter().flatten() {
            let _ = write!(out, ", {part}");
        }
        out
    }
}

// ================================================================================================
// Tests
// ================================================================================================

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::UTC;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test date")
    }

    /// The next `n` fire times, each after the previous one.
    fn fires(expr: &str, tz: Tz, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let e = CronExpr::parse(expr).expect("valid expression");
        let mut out = Vec::new();
        let mut at = start;
        while out.len() < n {
            match e.next_after(at, tz) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    fn local(tz: Tz, t: DateTime<Utc>) -> String {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %a")
            .to_string()
    }

    fn fires_local(expr: &str, tz: Tz, start: DateTime<Utc>, n: usize) -> Vec<String> {
        fires(expr, tz, start, n)
            .into_iter()
            .map(|t| local(tz, t))
            .collect()
    }

    fn err(expr: &str) -> CronError {
        CronExpr::parse(expr).expect_err("should be rejected")
    }

    #[test]
    fn every_five_seconds() {
        let got = fires("*/5 * * * * ?", UTC, utc(2024, 1, 1, 0, 0, 3), 3);
        assert_eq!(
            got,
            vec![
                utc(2024, 1, 1, 0, 0, 5),
                utc(2024, 1, 1, 0, 0, 10),
                utc(2024, 1, 1, 0, 0, 15)
            ]
        );
    }

    #[test]
    fn strictly_after_and_second_precision() {
        let e = CronExpr::parse("* * * * * ?").unwrap();
        let start = utc(2024, 1, 1, 0, 0, 0) + chrono::Duration::milliseconds(999);
        assert_eq!(e.next_after(start, UTC), Some(utc(2024, 1, 1, 0, 0, 1)));
        assert_eq!(
            e.next_after(utc(2024, 1, 1, 0, 0, 0), UTC),
            Some(utc(2024, 1, 1, 0, 0, 1))
        );
    }

    #[test]
    fn ranges_lists_steps_and_wrapping() {
        assert_eq!(
            fires_local("0 0 22-2 * * ?", UTC, utc(2024, 1, 1, 12, 0, 0), 5),
            vec![
                "2024-01-01 22:00:00 Mon",
                "2024-01-01 23:00:00 Mon",
                "2024-01-02 00:00:00 Tue",
                "2024-01-02 01:00:00 Tue",
                "2024-01-02 02:00:00 Tue"
            ]
        );
        assert_eq!(
            fires_local("0 5,10/20 8 * * ?", UTC, utc(2024, 1, 1, 0, 0, 0), 4),
            vec![
                "2024-01-01 08:05:00 Mon",
                "2024-01-01 08:10:00 Mon",
                "2024-01-01 08:30:00 Mon",
                "2024-01-01 08:50:00 Mon"
            ]
        );
        assert_eq!(
            fires_local("0 0 0 1 1-12/5 ?", UTC, utc(2024, 1, 1, 0, 0, 0), 3),
            vec![
                "2024-06-01 00:00:00 Sat",
                "2024-11-01 00:00:00 Fri",
                "2025-01-01 00:00:00 Wed"
            ]
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(
            fires_local(
                "0 30 9 ? jan-feb mon-fri",
                UTC,
                utc(2024, 2, 28, 12, 0, 0),
                3
            ),
            vec![
                "2024-02-29 09:30:00 Thu",
                "2025-01-01 09:30:00 Wed",
                "2025-01-02 09:30:00 Thu"
            ]
        );
        assert_eq!(
            fires_local("0 0 12 ? * SUN,sat", UTC, utc(2024, 1, 1, 0, 0, 0), 2),
            vec!["2024-01-06 12:00:00 Sat", "2024-01-07 12:00:00 Sun"]
        );
    }

    #[test]
    fn last_day_of_month_and_offsets() {
        assert_eq!(
            fires_local("0 0 10 L * ?", UTC, utc(2024, 1, 31, 11, 0, 0), 2),
            vec!["2024-02-29 10:00:00 Thu", "2024-03-31 10:00:00 Sun"]
        );
        assert_eq!(
            fires_local("0 0 10 L-3 * ?", UTC, utc(2023, 2, 1, 0, 0, 0), 2),
            vec!["2023-02-25 10:00:00 Sat", "2023-03-28 10:00:00 Tue"]
        );
        assert_eq!(
            fires_local("0 0 10 LW * ?", UTC, utc(2024, 3, 1, 0, 0, 0), 2),
            vec!["2024-03-29 10:00:00 Fri", "2024-04-30 10:00:00 Tue"]
        );
    }

    #[test]
    fn nearest_weekday_stays_in_month() {
        // 2024-06-01 is a Saturday: 1W moves forward to Monday the 3rd, not back into May.
        assert_eq!(
            fires_local("0 0 9 1W * ?", UTC, utc(2024, 5, 15, 0, 0, 0), 1),
            vec!["2024-06-03 09:00:00 Mon"]
        );
        // 2024-09-15 is a Sunday: 15W is Monday the 16th; 2024-06-15 is a Saturday: Friday 14th.
        assert_eq!(
            fires_local("0 0 9 15W * ?", UTC, utc(2024, 6, 1, 0, 0, 0), 1),
            vec!["2024-06-14 09:00:00 Fri"]
        );
        assert_eq!(
            fires_local("0 0 9 15W 9 ?", UTC, utc(2024, 6, 1, 0, 0, 0), 1),
            vec!["2024-09-16 09:00:00 Mon"]
        );
    }

    #[test]
    fn last_and_nth_weekday() {
        assert_eq!(
            fires_local("0 15 10 ? * 6L", UTC, utc(2024, 1, 1, 0, 0, 0), 2),
            vec!["2024-01-26 10:15:00 Fri", "2024-02-23 10:15:00 Fri"]
        );
        assert_eq!(
            fires_local("0 15 10 ? * FRI#3", UTC, utc(2024, 1, 1, 0, 0, 0), 2),
            vec!["2024-01-19 10:15:00 Fri", "2024-02-16 10:15:00 Fri"]
        );
        // A fifth Monday only exists in some months.
        assert_eq!(
            fires_local("0 0 0 ? * 2#5", UTC, utc(2024, 1, 1, 0, 0, 0), 2),
            vec!["2024-01-29 00:00:00 Mon", "2024-04-29 00:00:00 Mon"]
        );
        // L alone in day-of-week is Saturday.
        assert_eq!(
            fires_local("0 0 0 ? * L", UTC, utc(2024, 1, 1, 0, 0, 0), 1),
            vec!["2024-01-06 00:00:00 Sat"]
        );
    }

    #[test]
    fn years_and_the_end_of_time() {
        assert_eq!(
            fires_local(
                "0 0 0 1 1 ? 2030,2032-2033",
                UTC,
                utc(2024, 1, 1, 0, 0, 0),
                5
            ),
            vec![
                "2030-01-01 00:00:00 Tue",
                "2032-01-01 00:00:00 Thu",
                "2033-01-01 00:00:00 Sat"
            ]
        );
        assert!(fires("0 0 0 1 1 ? 2020", UTC, utc(2024, 1, 1, 0, 0, 0), 1).is_empty());
        assert!(fires("0 0 0 30 2 ?", UTC, utc(2024, 1, 1, 0, 0, 0), 1).is_empty());
        assert!(fires("0 0 0 ? * 9#2", UTC, utc(2024, 1, 1, 0, 0, 0), 1).is_empty());
    }

    #[test]
    fn dst_gap_is_skipped_that_day() {
        // 2024-03-10 02:30 does not exist in New York: no fire that day.
        assert_eq!(
            fires_local("0 30 2 * * ?", New_York, utc(2024, 3, 9, 12, 0, 0), 2),
            vec!["2024-03-11 02:30:00 Mon", "2024-03-12 02:30:00 Tue"]
        );
    }

    #[test]
    fn dst_overlap_fires_once_in_standard_time() {
        // 2024-11-03 01:30 happens twice in New York; Quartz fires at the second (EST) one.
        let got = fires("0 30 1 * * ?", New_York, utc(2024, 11, 2, 12, 0, 0), 2);
        assert_eq!(
            got,
            vec![utc(2024, 11, 3, 6, 30, 0), utc(2024, 11, 4, 6, 30, 0)]
        );
        // Starting inside the first 01:xx hour, Quartz jumps to the second one.
        let got = fires("0 */20 * * * ?", New_York, utc(2024, 11, 3, 5, 40, 0), 1);
        assert_eq!(got, vec![utc(2024, 11, 3, 7, 0, 0)]);
    }

    #[test]
    fn a_skipped_local_day_does_not_hang() {
        // Pacific/Apia skipped 2011-12-30 entirely; Quartz loops forever on this one.
        let got = fires_local(
            "0 0 12 LW * ?",
            chrono_tz::Pacific::Apia,
            utc(2011, 12, 29, 0, 0, 0),
            2,
        );
        assert_eq!(
            got,
            vec!["2012-01-31 12:00:00 Tue", "2012-02-29 12:00:00 Wed"]
        );
    }

    #[test]
    fn far_future_dst_follows_the_last_rule() {
        // chrono-tz's tables end in 2099; New York is still on DST in July 2110.
        let got = fires("0 0 12 1 7 ? 2110", New_York, utc(2024, 1, 1, 0, 0, 0), 1);
        assert_eq!(got, vec![utc(2110, 7, 1, 16, 0, 0)]);
    }

    #[test]
    fn quartz_leniency_is_preserved() {
        // Quartz ignores trailing characters after a complete value, and extra fields.
        let a = fires("0 0 12 ? * MONDAY", UTC, utc(2024, 1, 1, 0, 0, 0), 3);
        let b = fires("0 0 12 ? * MON", UTC, utc(2024, 1, 1, 0, 0, 0), 3);
        assert_eq!(a, b);
        assert!(CronExpr::parse("0 0 12 * * ? 2030 extra").is_ok());
        // "99" is Quartz's internal marker for '*'.
        let a = fires("99 0 12 * * ?", UTC, utc(2024, 1, 1, 0, 0, 0), 3);
        let b = fires("* 0 12 * * ?", UTC, utc(2024, 1, 1, 0, 0, 0), 3);
        assert_eq!(a, b);
    }

    #[test]
    fn source_is_trimmed_and_from_str_works() {
        let e: CronExpr = "  0 0 12 * * ?  ".parse().unwrap();
        assert_eq!(e.source(), "0 0 12 * * ?");
    }

    #[test]
    fn error_messages_name_field_and_reason() {
        let cases: &[(&str, &str)] = &[
            ("0 0 12 * *", "expression: expected 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year]), found 5"),
            ("60 0 12 * * ?", "seconds: value 60 out of range 0-59"),
            ("0 0-61 12 * * ?", "minutes: value 61 out of range 0-59"),
            ("0 0 24 * * ?", "hours: value 24 out of range 0-23"),
            ("0 0 12 32 * ?", "day-of-month: value 32 out of range 1-31"),
            ("0 0 12 0 * ?", "day-of-month: value 0 out of range 1-31"),
            ("0 0 12 ? 13 *", "month: value 13 out of range 1-12 (JAN-DEC)"),
            ("0 0 12 ? * 8", "day-of-week: value 8 out of range 1-7 (SUN-SAT)"),
            ("0 0 12 ? * 0", "day-of-week: value 0 out of range 1-7 (SUN-SAT)"),
            ("0 0 12 ? * 8L", "day-of-week: value 8 out of range 1-7 (SUN-SAT)"),
            ("0 0 12 ? FOO *", "month: unknown month 'FOO' (expected JAN-DEC)"),
            ("0 0 12 ? * MON-FOO", "day-of-week: unknown day 'FOO' (expected SUN-SAT)"),
            ("0 0 12 ABC * ?", "day-of-month: names are only allowed in month and day-of-week, not 'ABC'"),
            ("0 0 12 ? * 6#6", "day-of-week: '#' must be followed by a number 1-5, not '6'"),
            ("0 0 12 ? * 6#1,2#2", "day-of-week: only one 'day#n' value is allowed"),
            ("0 0 12 ? * 6L,2", "day-of-week: 'L' cannot be combined with other values in a list"),
            ("0 0 12 L,5 * ?", "day-of-month: 'L' cannot be combined with other values in a list"),
            ("0 0 12 L-31 * ?", "day-of-month: the offset in L-n must be at most 30, not 31"),
            ("0 0 12 L-28W * ?", "day-of-month: L-28W would fall before the 1st in February; with W the offset must be at most 27"),
            ("0 0 12 0W * ?", "day-of-month: value 0 out of range 1-31"),
            ("0 0 5L * * ?", "hours: the 'L' suffix is only allowed in day-of-week (e.g. 6L)"),
            ("0 0 12 ? * 5W", "day-of-week: the 'W' suffix is only allowed in day-of-month (e.g. 15W)"),
            ("0 0 12 5#2 * ?", "day-of-month: '#' is only allowed in day-of-week (e.g. 6#3)"),
            ("*/60 * * * * ?", "seconds: step 60 is too large (at most 59)"),
            ("0 0 */24 * * ?", "hours: step 24 is too large (at most 23)"),
            ("0 0 0 ? */13 *", "month: step 13 is too large (at most 12)"),
            ("0 0 0 ? * */8", "day-of-week: step 8 is too large (at most 7)"),
            ("0 0 0 */32 * ?", "day-of-month: step 32 is too large (at most 31)"),
            ("0 0 0 ? * 1/", "day-of-week: '/' must be followed by a number"),
            ("? 0 0 * * ?", "seconds: '?' is only allowed in day-of-month and day-of-week"),
            ("0 0 0 ?AB * 1", "day-of-month: '?' must stand alone, not '?AB'"),
            ("0 0 0 * * 1", "expression: specifying both day-of-month and day-of-week is not supported; use '?' in one of them"),
            ("0 0 0 ? * ?", "expression: '?' cannot be used in both day-of-month and day-of-week"),
            ("0 0 0 1 1 ? 2030-2020", "year: range 2030-2020 runs backwards"),
            ("0 0 0 ? * %", "day-of-week: unexpected character '%' in '%'"),
            ("0 0 0 1- * ?", "day-of-month: range '1-' has no end"),
            ("0 0 0 99999999999 * ?", "day-of-month: number '99999999999' is too large"),
            ("L 0 0 * * ?", "seconds: no values (a field of only commas, or 'L' outside the day fields)"),
            ("0 , 0 * * ?", "minutes: no values (a field of only commas, or 'L' outside the day fields)"),
            ("0 0 0 ? L MON", "month: no values (a field of only commas, or 'L' outside the day fields)"),
        ];
        for (expr, want) in cases {
            let e = err(expr);
            // Whole-expression errors print only the reason; the caller names the field.
            let shown = want.strip_prefix("expression: ").unwrap_or(want);
            assert_eq!(e.to_string(), shown, "for {expr:?}");
            assert_eq!(format!("{}: {}", e.field, e.reason), *want, "for {expr:?}");
        }
    }

    #[test]
    fn explain_reads_naturally() {
        let cases = [
            ("0 30 9 ? * MON-FRI", "At 09:30:00, Monday through Friday"),
            ("*/5 * * * * ?", "Every 5 seconds"),
            (
                "0 15 10 ? * 6L",
                "At 10:15:00, on the last Friday of the month",
            ),
            (
                "0 15 10 ? * 6#3",
                "At 10:15:00, on the third Friday of the month",
            ),
            ("0 0 12 L * ?", "At 12:00:00, on the last day of the month"),
            (
                "0 0 12 LW * ?",
                "At 12:00:00, on the last weekday of the month",
            ),
            (
                "0 0 12 L-3 * ?",
                "At 12:00:00, 3 days before the last day of the month",
            ),
            (
                "0 0 12 15W * ?",
                "At 12:00:00, on the weekday nearest the 15th of the month",
            ),
            (
                "0 0 12 1,15 * ?",
                "At 12:00:00, on the 1st and 15th of the month",
            ),
            ("0 */15 * * * ?", "Every 15 minutes"),
            ("0 0 * * * ?", "Every hour"),
            (
                "0 0/30 9-17 * * ?",
                "Every 30 minutes, between 09:00 and 17:59",
            ),
            ("0 15 10,14 * * ?", "At 10:15:00 and 14:15:00"),
            (
                "0 0 8 1 JAN ? 2030",
                "At 08:00:00, on the 1st of the month, only in January, in 2030",
            ),
            ("* * * * * ?", "Every second"),
            ("0 * * * * ?", "Every minute"),
            (
                "0 0 0 ? * SAT,SUN",
                "At 00:00:00, only on Sunday and Saturday",
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(
                CronExpr::parse(expr).unwrap().explain(),
                want,
                "for {expr:?}"
            );
        }
    }

    #[test]
    fn fuzz_never_panics() {
        // A small deterministic fuzz over the characters that matter to the parser.
        let alphabet: Vec<char> = "0123456789*/?-,#LW LMONFRIJANDEC \t?٣ß".chars().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 30) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(e) = CronExpr::parse(&s) {
                let _ = e.explain();
                let _ = e.next_after(utc(2024, 3, 10, 6, 59, 59), New_York);
            }
        }
    }

    #[test]
    fn next_after_is_fast() {
        let e = CronExpr::parse("0 15 10 ? * 6L").unwrap();
        let start = std::time::Instant::now();
        let mut at = utc(2024, 1, 1, 0, 0, 0);
        for _ in 0..1000 {
            at = e.next_after(at, New_York).unwrap();
        }
        // ~1000 monthly fire times; generous bound for unoptimised builds.
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
