//! Time: the calendar, the machine's local time, and a clock tests can set.
//!
//! Everything that turns an instant into a date, a date into an instant, or
//! asks what time it is goes through here, on the `jiff` crate: no process
//! of postern calls the C library's time functions.
//!
//! - **Local time** is the machine's time zone (`TZ`, else `/etc/localtime`,
//!   looked up in the system's tzdb), loaded once per process by [`zone`],
//!   which logging's set-up calls before a worker chroots: after `chroot(2)`
//!   `/etc/localtime` may be out of reach. As the C library's `localtime_r`
//!   did, a process keeps the zone it loaded first; a machine without one
//!   is on UTC.
//! - **Days** ([`Day`]): calendar dates; the statistics count per local day
//!   and sum per ISO week ([`Week`]); a day number is the days since
//!   1970-01-01 ([`Day::days`], [`local_day`]).
//! - **Formats**: [`Timestamp`], the log lines' RFC 3339 UTC time with
//!   milliseconds (`2026-12-06T15:08:02.308Z`, hand-placed digits: it runs
//!   for every log line); [`local_minute`] (`2026-12-06 16:08`, restart
//!   listings) and its inverse for `yyyyMMddHHmm` directives
//!   ([`from_local`]).
//! - **The clock** ([`Clock`]): wall time in milliseconds since the epoch and
//!   monotonic time, read from the system, or from a [`ManualClock`] that a
//!   test sets and moves. A component that decides by the time (the
//!   updater's retries and restarts; greylisting next) takes a `Clock` when
//!   it is made instead of asking the system.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};

/// The machine's time zone, loaded at the first call and kept for the
/// life of the process (UTC when the system names none).
pub fn zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| {
        localtime_file().unwrap_or_else(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
    })
}

/// `/etc/localtime` itself, when `TZ` does not name another zone. jiff's
/// `try_system` would find the same rules by the zone's name, indexing the
/// whole time zone database to do so (every file under
/// /usr/share/zoneinfo: about 85 KB of heap kept by every process, and a
/// million and a half instructions at its start).
fn localtime_file() -> Option<TimeZone> {
    if std::env::var_os("TZ").is_some() {
        return None;
    }
    let data = std::fs::read("/etc/localtime").ok()?;
    TimeZone::tzif("localtime", &data).ok()
}

/// Milliseconds since the epoch, now (the system's clock).
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `millis` since the epoch as a `jiff` timestamp, clamped to its range.
fn instant_at(millis: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(millis).unwrap_or(if millis < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// The local time's offset from UTC, in seconds, at `secs` since the epoch.
pub fn utc_offset(secs: i64) -> i64 {
    let at = instant_at(secs.saturating_mul(1000));
    i64::from(zone().to_offset(at).seconds())
}

/// The local day (days since 1970-01-01) at `millis` since the epoch.
pub fn local_day(millis: i64) -> i64 {
    let secs = millis.div_euclid(1000);
    (secs + utc_offset(secs)).div_euclid(86_400)
}

/// The first local midnight after `millis`, in milliseconds since the epoch
/// (the start of the next local day: where a change of offset skips
/// midnight, the first instant of that day).
pub fn next_local_midnight(millis: i64) -> i64 {
    let tz = zone();
    let tomorrow = tz
        .to_datetime(instant_at(millis))
        .date()
        .tomorrow()
        .map(|d| d.to_datetime(Time::midnight()));
    match tomorrow.and_then(|t| tz.to_timestamp(t)) {
        Ok(t) => t.as_millisecond().max(millis + 1),
        Err(_) => millis.saturating_add(86_400_000),
    }
}

/// `YYYY-MM-DD` of a day number.
pub fn local_date(day: i64) -> String {
    Day::from_days(day).to_string()
}

/// (year, month, day) → days since 1970-01-01. Days past the end of the
/// month count on into the next (`days_from_civil(2026, 2, 31)` is 3 March).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let first = i16::try_from(y)
        .ok()
        .zip(i8::try_from(m).ok())
        .and_then(|(y, m)| Date::new(y, m, 1).ok());
    match first {
        Some(first) => Day::of(first).days() + i64::from(d) - 1,
        // Out of the calendar's range (years -9999 to 9999): days of 365.2425.
        None => ((y - 1970) * 146_097).div_euclid(400) + i64::from(d) - 1,
    }
}

/// Local date and time → seconds since the epoch; `None` when the date does
/// not exist. A time that the local clock skips (summer time) is taken
/// after the change, one it shows twice before.
pub fn from_local(day: Day, hour: u32, minute: u32, second: u32) -> Option<i64> {
    from_local_in(zone(), day, hour, minute, second)
}

/// [`from_local`] in time zone `tz`.
fn from_local_in(tz: &TimeZone, day: Day, hour: u32, minute: u32, second: u32) -> Option<i64> {
    let t = Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let at = tz.to_timestamp(day.date()?.to_datetime(t)).ok()?;
    Some(at.as_second())
}

/// Local time as `yyyy-mm-dd hh:mm` at `secs` since the epoch, the form of
/// the restart directives.
pub fn local_minute(secs: i64) -> String {
    let t = zone().to_datetime(instant_at(secs.saturating_mul(1000)));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// RFC 3339 UTC time with milliseconds, `2026-12-06T15:08:02.308Z`: the
/// time of every log line.
pub struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let utc: DateTime = Offset::UTC.to_datetime(instant_at((secs as i64).saturating_mul(1000)));
        let rem = secs % 86_400;
        // Digits placed by hand: this runs for every log line, and the
        // formatting machinery's padding cost more than the rest of it.
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, utc.year().clamp(0, 9999) as u64);
        put(5, 2, utc.month() as u64);
        put(8, 2, utc.day() as u64);
        put(11, 2, rem / 3600);
        put(14, 2, rem % 3600 / 60);
        put(17, 2, rem % 60);
        put(20, 3, u64::from(d.subsec_millis()));
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

/// A calendar date (the proleptic Gregorian calendar, years 1 to 9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
}

/// An ISO 8601 week: its week-numbering year and number (1 to 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    /// The week-numbering year (that of the week's Thursday).
    pub year: i32,
    /// The week number.
    pub week: u32,
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

/// 1970-01-01.
const EPOCH: Date = Date::constant(1970, 1, 1);

impl Day {
    /// A valid date, or `None`.
    pub fn new(year: i32, month: u32, day: u32) -> Option<Day> {
        let d = Day { year, month, day };
        ((1..=9999).contains(&year) && d.date().is_some()).then_some(d)
    }

    /// The day of a `jiff` date.
    fn of(d: Date) -> Day {
        Day {
            year: i32::from(d.year()),
            month: d.month() as u32,
            day: d.day() as u32,
        }
    }

    /// The `jiff` date, if this is one.
    fn date(self) -> Option<Date> {
        Date::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
        )
        .ok()
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days(self) -> i64 {
        self.date()
            .map_or(0, |d| d.duration_since(EPOCH).as_secs().div_euclid(86_400))
    }

    /// The date `n` days after 1970-01-01 (clamped to years -9999 to 9999).
    pub fn from_days(n: i64) -> Day {
        let secs = n.saturating_mul(86_400);
        let at = jiff::Timestamp::from_second(secs).unwrap_or(if n < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        Day::of(Offset::UTC.to_datetime(at).date())
    }

    /// The date `n` days later (earlier when negative).
    pub fn plus(self, n: i64) -> Day {
        Day::from_days(self.days() + n)
    }

    /// 1 for Monday to 7 for Sunday.
    pub fn weekday(self) -> u32 {
        self.date()
            .map_or(4, |d| d.weekday().to_monday_one_offset() as u32)
    }

    /// The Monday that starts this date's ISO week.
    pub fn monday(self) -> Day {
        self.plus(1 - i64::from(self.weekday()))
    }

    /// The ISO week: the one holding this date's week's Thursday, numbered
    /// from the week that holds the year's first Thursday.
    pub fn iso_week(self) -> Week {
        let w = self.date().unwrap_or(EPOCH).iso_week_date();
        Week {
            year: i32::from(w.year()),
            week: w.week() as u32,
        }
    }

    /// Parses `YYYY-MM-DD` (digits only).
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| {
            s.get(r)
                .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok())
        };
        Day::new(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
    }

    /// The local date at Unix time `t` (the machine's time zone).
    pub fn local(t: i64) -> Option<Day> {
        let at = jiff::Timestamp::from_second(t).ok()?;
        let d = Day::of(zone().to_datetime(at).date());
        Day::new(d.year, d.month, d.day)
    }

    /// Today's local date, by the system's clock.
    pub fn today() -> Day {
        Clock::system().today()
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Where a component reads the time: the system's clocks ([`Clock::system`],
/// the default), or a [`ManualClock`] that a test sets. Cheap to clone; the
/// clones of a manual clock move together.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

/// A manual clock's state: wall time, and monotonic time as a distance
/// from the instant it was made.
#[derive(Debug)]
struct Manual {
    millis: AtomicI64,
    base: Instant,
    elapsed_nanos: AtomicU64,
}

impl Clock {
    /// The system's wall clock and monotonic clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// Wall time: milliseconds since 1970-01-01 UTC.
    pub fn now_millis(&self) -> i64 {
        match &self.manual {
            None => now_millis(),
            Some(m) => m.millis.load(Ordering::Relaxed),
        }
    }

    /// Wall time as a `SystemTime` (the epoch at the latest: a manual clock
    /// set before it).
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => {
                let ms = u64::try_from(m.millis.load(Ordering::Relaxed)).unwrap_or(0);
                UNIX_EPOCH + Duration::from_millis(ms)
            }
        }
    }

    /// Wall time in whole seconds since the epoch (0 before it).
    pub fn now_secs(&self) -> u64 {
        u64::try_from(self.now_millis().div_euclid(1000)).unwrap_or(0)
    }

    /// Monotonic time, for durations and deadlines: never goes back, and
    /// does not follow changes of the wall clock.
    pub fn instant(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.base + Duration::from_nanos(m.elapsed_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Today's local date (UTC's when out of range).
    pub fn today(&self) -> Day {
        let secs = self.now_millis().div_euclid(1000);
        Day::local(secs).unwrap_or_else(|| Day::from_days(secs.div_euclid(86_400)))
    }
}

/// A clock that stands still until a test moves it; [`ManualClock::clock`]
/// gives the [`Clock`] to hand to the component under test.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

impl ManualClock {
    /// A clock showing `millis` since the epoch.
    pub fn new(millis: i64) -> ManualClock {
        ManualClock(Arc::new(Manual {
            millis: AtomicI64::new(millis),
            base: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        }))
    }

    /// The clock to give a component: it reads this one.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.0.clone()),
        }
    }

    /// Time passes: wall and monotonic time move on by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.millis.fetch_add(ms, Ordering::Relaxed);
        self.0.elapsed_nanos.fetch_add(ns, Ordering::Relaxed);
    }

    /// The wall clock is set to `millis` (as an administrator or NTP may
    /// step it); monotonic time does not move.
    pub fn set(&self, millis: i64) {
        self.0.millis.store(millis, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Day {
        Day::parse(s).expect("valid date")
    }

    #[test]
    fn the_localtime_file_gives_the_systems_offsets() {
        let (Some(file), Ok(system)) = (localtime_file(), TimeZone::try_system()) else {
            return; // No /etc/localtime here, or TZ set: nothing to compare.
        };
        // Twice a year for sixty years: any daylight saving rule shows.
        for half_year in 0..120 {
            let at = jiff::Timestamp::from_second(1_000_000_000 + half_year * 15_778_800)
                .expect("in range");
            assert_eq!(file.to_offset(at), system.to_offset(at), "at {at}");
        }
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_231_429_953_007);
        assert_eq!(Timestamp(t).to_string(), "2009-01-08T15:52:33.007Z");
        assert_eq!(
            Timestamp(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_796_569_682_308);
        assert_eq!(Timestamp(t).to_string(), "2026-12-06T15:08:02.308Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_399_999);
        assert_eq!(Timestamp(t).to_string(), "2000-02-28T23:59:59.999Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_868_800_000);
        assert_eq!(Timestamp(t).to_string(), "2000-03-01T00:00:00.000Z");
    }

    #[test]
    fn day_numbers_both_ways() {
        for day in [-700_000, -1, 0, 1, 59, 60, 365, 11_016, 20_780, 2_932_000] {
            let x = Day::from_days(day);
            assert_eq!(days_from_civil(x.year.into(), x.month, x.day), day, "{x}");
            assert_eq!(x.days(), day);
        }
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        assert_eq!(local_date(20_780), "2026-11-23");
        // As the hand-written calendar did: days past a month's end count on.
        assert_eq!(
            days_from_civil(2026, 2, 31),
            d("2026-03-03").days(),
            "31 February"
        );
    }

    #[test]
    fn midnights_follow_each_other() {
        let now = now_millis();
        let m = next_local_midnight(now);
        assert!(m > now && m - now <= 25 * 3_600_000);
        assert_eq!(local_day(m), local_day(now) + 1);
        assert_eq!(local_day(m - 1000), local_day(now));
    }

    #[test]
    fn local_minutes_both_ways() {
        let t = from_local(d("2030-01-02"), 15, 30, 0).expect("a time");
        assert_eq!(local_minute(t), "2030-01-02 15:30");
        assert_eq!(from_local(d("2030-01-02"), 15, 31, 0), Some(t + 60));
        assert_eq!(from_local(d("2030-01-02"), 24, 0, 0), None);
    }

    #[test]
    fn days_round_trip_and_known_dates() {
        assert_eq!(d("1970-01-01").days(), 0);
        assert_eq!(d("2000-03-01").days(), 11_017);
        assert_eq!(d("1969-12-31").days(), -1);
        assert_eq!(d("2024-02-29").plus(1), d("2024-03-01"));
        assert_eq!(d("2023-02-28").plus(1), d("2023-03-01"));
        assert_eq!(d("2025-12-31").plus(1), d("2026-01-01"));
        for n in -700_000..800_000 {
            if n % 7 != 0 && !(-800..800).contains(&n) {
                continue;
            }
            let day = Day::from_days(n);
            assert_eq!(day.days(), n, "{day}");
            assert_eq!(Day::parse(&day.to_string()), Some(day));
        }
        for bad in [
            "2023-02-29",
            "2100-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-04-31",
            "2025-4-01",
            "2025/04/01",
            "20250401xx",
            "+025-04-01",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert!(Day::parse("2000-02-29").is_some());
    }

    #[test]
    fn weekdays_and_iso_weeks() {
        assert_eq!(d("1970-01-01").weekday(), 4, "a Thursday");
        assert_eq!(d("2026-01-05").weekday(), 1, "a Monday");
        assert_eq!(d("2026-01-11").weekday(), 7, "a Sunday");
        assert_eq!(d("2026-01-08").monday(), d("2026-01-05"));
        assert_eq!(d("2026-01-05").monday(), d("2026-01-05"));
        for (date, week) in [
            ("2005-01-01", "2004-W53"),
            ("2005-01-02", "2004-W53"),
            ("2005-01-03", "2005-W01"),
            ("2008-12-29", "2009-W01"),
            ("2009-12-31", "2009-W53"),
            ("2010-01-03", "2009-W53"),
            ("2010-01-04", "2010-W01"),
            ("2021-01-03", "2020-W53"),
            ("2024-12-30", "2025-W01"),
            ("2025-06-15", "2025-W24"),
            ("2026-01-01", "2026-W01"),
            ("2026-12-31", "2026-W53"),
            ("2027-01-03", "2026-W53"),
            ("2027-01-04", "2027-W01"),
        ] {
            assert_eq!(d(date).iso_week().to_string(), week, "{date}");
        }
    }

    #[test]
    fn local_dates() {
        let today = Day::today();
        assert!(today.year >= 2024, "{today}");
        // Noon UTC is the same date or its neighbour in any time zone.
        let t = d("2026-03-15").days() * 86_400 + 43_200;
        let local = Day::local(t).expect("local time");
        assert!((local.days() - d("2026-03-15").days()).abs() <= 1);
    }

    #[test]
    fn a_skipped_time_moves_on_and_a_repeated_one_is_taken_first() {
        let Ok(paris) = TimeZone::get("Europe/Paris") else {
            return; // no tzdb on this machine
        };
        let utc = |s: &str| {
            jiff::Timestamp::from_str(s)
                .expect("a timestamp")
                .as_second()
        };
        // 2026-03-29: 02:00 → 03:00; 02:30 does not exist, it is 03:30 CEST.
        let spring = from_local_in(&paris, d("2026-03-29"), 2, 30, 0);
        assert_eq!(spring, Some(utc("2026-03-29T01:30:00Z")));
        // 2026-10-25: 03:00 → 02:00; 02:30 happens twice, first in CEST.
        let autumn = from_local_in(&paris, d("2026-10-25"), 2, 30, 0);
        assert_eq!(autumn, Some(utc("2026-10-25T00:30:00Z")));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let hand = ManualClock::new(1_796_569_682_308);
        let clock = hand.clock();
        let (t0, i0) = (clock.now_millis(), clock.instant());
        assert_eq!(clock.now_millis(), t0);
        assert_eq!(clock.instant(), i0);
        hand.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_millis(), t0 + 1500);
        assert_eq!(clock.now_secs(), 1_796_569_683);
        assert_eq!(
            Timestamp(clock.now()).to_string(),
            "2026-12-06T15:08:03.808Z"
        );
        assert_eq!(clock.instant() - i0, Duration::from_millis(1500));
        hand.set(0);
        assert_eq!(clock.now_millis(), 0, "the wall clock steps back");
        assert_eq!(clock.instant() - i0, Duration::from_millis(1500));
        hand.set(d("2026-06-01").days() * 86_400_000 + 43_200_000);
        let today = clock.today();
        assert!((today.days() - d("2026-06-01").days()).abs() <= 1);
        let system = Clock::system();
        assert!((system.now_millis() - now_millis()).abs() < 60_000);
    }
}
