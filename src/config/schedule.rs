//! Device schedules: windows of the week that switch a device to another profile, e.g.
//! `schedule = [{ profile = "no-meta", days = "mon-fri", from = "21:00", to = "07:00" }]`.
//!
//! A window is read in local wall-clock time (the system time zone), so it follows daylight
//! saving changes: "21:00 to 07:00" is 10 hours most nights, 9 or 11 on the nights the clocks
//! change. `days` are the days a window *starts*: a window that crosses midnight covers the
//! next morning too (`fri 21:00–07:00` covers Saturday until 07:00). The first window that
//! covers the time wins; outside every window the device's own profile applies.
//!
//! This module owns the values (days, times, windows) and what they cover; which profile a
//! device has right now is worked out off the query path, from the clock, by the policy.

use std::fmt;

use jiff::civil::{DateTime, Weekday};

/// Minutes in a day.
const DAY: u16 = 24 * 60;
/// Minutes in a week: the resolution at which windows are compared.
const WEEK: usize = 7 * DAY as usize;

/// Day names, Monday first (the index of a day in [`Days`]).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A set of days of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    /// Parses `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon` (a range may wrap) or `daily`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        if text == "daily" || text == "every day" {
            return Ok(Self(0x7f));
        }
        let mut days = 0u8;
        for part in text.split(',').map(str::trim) {
            let (first, last) = match part.split_once('-') {
                Some((first, last)) => (day_index(first.trim())?, day_index(last.trim())?),
                None => (day_index(part)?, day_index(part)?),
            };
            let mut day = first;
            loop {
                days |= 1 << day;
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        Ok(Self(days))
    }

    /// Whether `day` (0 = Monday) is in the set.
    pub fn contains(self, day: usize) -> bool {
        self.0 & (1 << day) != 0
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0x7f {
            return f.write_str("every day");
        }
        let names: Vec<_> = (0..7)
            .filter(|&day| self.contains(day))
            .map(|day| DAY_NAMES[day])
            .collect();
        f.write_str(&names.join(","))
    }
}

fn day_index(name: &str) -> Result<usize, String> {
    let short = name.get(..3).unwrap_or(name);
    DAY_NAMES
        .iter()
        .position(|&day| day == short && day_name_matches(name))
        .ok_or_else(|| {
            format!(
                "`{name}` is not a day: use mon, tue, wed, thu, fri, sat, sun, ranges like \
                 `mon-fri`, lists like `sat,sun`, or `daily`"
            )
        })
}

/// `mon`, `monday`: the full name or its first three letters.
fn day_name_matches(name: &str) -> bool {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    name.len() == 3 || FULL.contains(&name)
}

/// A time of day in minutes since midnight, `00:00` to `24:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Parses `HH:MM` (24-hour clock; `24:00` is the end of the day).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is not a time of day: write it as HH:MM, like `21:00` or `07:30`");
        let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(minutes) || !(1..=2).contains(&hours.len()) {
            return Err(bad());
        }
        let hours: u16 = hours.parse().map_err(|_| bad())?;
        let minutes: u16 = minutes.parse().map_err(|_| bad())?;
        let total = hours * 60 + minutes;
        if minutes >= 60 || total > DAY {
            return Err(bad());
        }
        Ok(Self(total))
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One window of a device's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The profile the device has inside it.
    pub profile: String,
    /// The days it starts on.
    pub days: Days,
    /// When it starts, local time.
    pub from: TimeOfDay,
    /// When it ends, local time (the next day when not after `from`).
    pub to: TimeOfDay,
}

impl Window {
    /// Whether it covers minute `minute` of day `day` (0 = Monday).
    pub fn covers(&self, day: usize, minute: u16) -> bool {
        let (from, to) = (self.from.minutes(), self.to.minutes());
        if from < to {
            return self.days.contains(day) && (from..to).contains(&minute);
        }
        // Crosses midnight: the evening of a listed day, or the morning after one.
        let yesterday = (day + 6) % 7;
        (self.days.contains(day) && minute >= from)
            || (self.days.contains(yesterday) && minute < to)
    }

    /// Whether it crosses midnight.
    pub fn crosses_midnight(&self) -> bool {
        self.to <= self.from
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let next = if self.crosses_midnight() {
            " the next day"
        } else {
            ""
        };
        write!(
            f,
            "profile {} on {} from {} to {}{next}",
            self.profile, self.days, self.from, self.to
        )
    }
}

/// The index of the first window of `windows` that covers `time`.
pub fn window_at(windows: &[Window], time: DateTime) -> Option<usize> {
    let (day, minute) = day_and_minute(time);
    windows.iter().position(|window| window.covers(day, minute))
}

/// When the window in force at `time` (or the absence of one) next changes: the first minute
/// after `time` at which [`window_at`] gives another answer, within a week.
pub fn next_change(windows: &[Window], time: DateTime) -> Option<DateTime> {
    let now = window_at(windows, time);
    let start = time.with().second(0).subsec_nanosecond(0).build().ok()?;
    (1..=WEEK as i64)
        .filter_map(|minutes| start.checked_add(jiff::Span::new().minutes(minutes)).ok())
        .find(|&later| window_at(windows, later) != now)
}

fn day_and_minute(time: DateTime) -> (usize, u16) {
    let day = match time.weekday() {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    };
    let minute =
        u16::try_from(time.hour()).unwrap_or(0) * 60 + u16::try_from(time.minute()).unwrap_or(0);
    (day, minute)
}

/// The index of the first window in `windows` that can never apply because the windows before
/// it cover every minute it covers (the first match wins), with the index of the last of
/// those earlier windows.
pub fn shadowed(windows: &[Window]) -> Option<(usize, usize)> {
    let mut covered = vec![false; WEEK];
    let mut last_covering = vec![0usize; WEEK];
    for (index, window) in windows.iter().enumerate() {
        let minutes: Vec<usize> = (0..WEEK)
            .filter(|&m| window.covers(m / DAY as usize, (m % DAY as usize) as u16))
            .collect();
        if minutes.iter().all(|&m| covered[m]) {
            let by = minutes.iter().map(|&m| last_covering[m]).max().unwrap_or(0);
            return Some((index, by));
        }
        for m in minutes {
            if !covered[m] {
                covered[m] = true;
                last_covering[m] = index;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use jiff::{Timestamp, civil};

    use super::*;

    fn window(profile: &str, days: &str, from: &str, to: &str) -> Window {
        Window {
            profile: profile.into(),
            days: Days::parse(days).unwrap(),
            from: TimeOfDay::parse(from).unwrap(),
            to: TimeOfDay::parse(to).unwrap(),
        }
    }

    #[test]
    fn days_and_times_parse_and_refuse_what_they_must() {
        assert_eq!(
            Days::parse("mon-fri").unwrap().to_string(),
            "mon,tue,wed,thu,fri"
        );
        assert_eq!(
            Days::parse("fri-mon").unwrap().to_string(),
            "mon,fri,sat,sun"
        );
        assert_eq!(Days::parse("Sat, Sunday").unwrap().to_string(), "sat,sun");
        assert_eq!(Days::parse("daily").unwrap().to_string(), "every day");
        assert!(
            Days::parse("mon-frx")
                .unwrap_err()
                .contains("`frx` is not a day")
        );
        assert!(Days::parse("").is_err());
        assert!(Days::parse("mond").is_err());
        assert_eq!(TimeOfDay::parse("7:05").unwrap().minutes(), 425);
        assert_eq!(TimeOfDay::parse("24:00").unwrap().minutes(), 1440);
        for bad in ["24:01", "21:60", "2100", "21:0", "-1:00", "aa:bb"] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_across_midnight_covers_the_next_morning_of_each_day() {
        let school_nights = window("no-meta", "mon-fri", "21:00", "07:00");
        let at = |date: &str, time: &str| -> DateTime { format!("{date}T{time}").parse().unwrap() };
        let windows = [school_nights];
        // 2026-12-07 is a Monday.
        assert_eq!(window_at(&windows, at("2026-12-07", "20:59")), None);
        assert_eq!(window_at(&windows, at("2026-12-07", "21:00")), Some(0));
        assert_eq!(window_at(&windows, at("2026-12-08", "06:59")), Some(0));
        assert_eq!(window_at(&windows, at("2026-12-08", "07:00")), None);
        // Friday night runs into Saturday morning; Sunday night is not a school night.
        assert_eq!(window_at(&windows, at("2026-12-12", "06:00")), Some(0));
        assert_eq!(window_at(&windows, at("2026-12-13", "22:00")), None);
        // Monday morning belongs to Sunday evening, which is not listed.
        assert_eq!(window_at(&windows, at("2026-12-07", "06:00")), None);
        assert_eq!(
            next_change(&windows, at("2026-12-07", "22:30")),
            Some(at("2026-12-08", "07:00"))
        );
    }

    #[test]
    fn the_first_matching_window_wins() {
        let windows = [
            window("strict", "sat", "10:00", "12:00"),
            window("no-meta", "daily", "08:00", "20:00"),
        ];
        let saturday: DateTime = "2026-12-12T11:00".parse().unwrap();
        assert_eq!(window_at(&windows, saturday), Some(0));
        let sunday: DateTime = "2026-12-13T11:00".parse().unwrap();
        assert_eq!(window_at(&windows, sunday), Some(1));
    }

    #[test]
    fn a_window_that_can_never_apply_is_found() {
        let fine = [
            window("strict", "sat", "10:00", "12:00"),
            window("no-meta", "daily", "08:00", "20:00"),
        ];
        assert_eq!(shadowed(&fine), None);
        let hidden = [
            window("no-meta", "mon-fri", "21:00", "07:00"),
            window("strict", "daily", "06:00", "20:00"),
            window("strict", "wed", "22:00", "23:00"),
        ];
        assert_eq!(shadowed(&hidden), Some((2, 0)));
    }

    /// Europe/Berlin moved from CET to CEST at 02:00 on 2026-03-29 and back at 03:00 on
    /// 2026-10-25: the window keeps to the wall clock, so it lasts 9 hours, then 11.
    #[test]
    fn windows_follow_the_wall_clock_across_daylight_saving_changes() {
        let berlin = TimeZone::get("Europe/Berlin").expect("the system time zone database");
        let windows = [window("no-meta", "daily", "21:00", "07:00")];
        let in_window = |utc: &str| {
            let instant: Timestamp = utc.parse().unwrap();
            window_at(
                &windows,
                instant.to_zoned_datetime(berlin.clone()).datetime(),
            )
            .is_some()
        };
        // Spring: 21:00 CET is 20:00 UTC; 07:00 CEST is 05:00 UTC.
        assert!(!in_window("2026-03-28T19:59:00Z"));
        assert!(in_window("2026-03-28T20:00:00Z"));
        assert!(in_window("2026-03-29T04:59:00Z"));
        assert!(!in_window("2026-03-29T05:00:00Z"));
        // Autumn: 21:00 CEST is 19:00 UTC; 07:00 CET is 06:00 UTC.
        assert!(in_window("2026-10-24T19:00:00Z"));
        assert!(in_window("2026-10-25T05:59:00Z"));
        assert!(!in_window("2026-10-25T06:00:00Z"));
        let spring = civil::date(2026, 3, 28).at(22, 0, 0, 0);
        assert_eq!(
            next_change(&windows, spring),
            Some(civil::date(2026, 3, 29).at(7, 0, 0, 0))
        );
    }
}
