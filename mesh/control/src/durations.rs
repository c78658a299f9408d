//! Every duration `mesh-control` accepts, with its documented range.
//!
//! A duration comes from a flag (`--ttl 10m`) or is handed to a library function. Each kind has
//! one [`Bound`] here; the flag parsers and the library functions check against the same one,
//! so `token create --ttl 100000000h` is refused with a message naming the flag instead of
//! overflowing a date later, and `--svid-ttl 0s` cannot issue certificates that expire at
//! issuance. Arithmetic on times uses `checked_add` and turns `None` into the same error.

use std::time::Duration;

use time::OffsetDateTime;

/// A duration outside its range, or one that cannot be added to the current time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {given} is out of range: it must be between {} and {} ({help})", fmt(*.min), fmt(*.max))]
pub struct OutOfRange {
    /// The flag or field, e.g. `--ttl`.
    pub what: &'static str,
    /// The value as given (or formatted).
    pub given: String,
    /// Smallest accepted value.
    pub min: Duration,
    /// Largest accepted value.
    pub max: Duration,
    /// What the bound is for.
    pub help: &'static str,
}

/// The accepted range of one kind of duration.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The flag that sets it (named in errors).
    pub flag: &'static str,
    /// Smallest accepted value (never zero: zero fails closed).
    pub min: Duration,
    /// Largest accepted value.
    pub max: Duration,
    /// Why the range is what it is.
    pub help: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Lifetime of a CA generation made by `ca init` / `ca rotate` (10 years).
pub const CA_VALIDITY: Duration = secs(10 * 365 * DAY);

/// `token create --ttl`: 1 minute to 30 days.
pub const TOKEN_TTL: Bound = Bound {
    flag: "--ttl",
    min: secs(MIN),
    max: secs(30 * DAY),
    help: "a join token is a one-time bootstrap secret; create it shortly before use",
};

/// `run --svid-ttl`: 10 seconds to 7 days. Production meshes use minutes to hours; the lower
/// end exists so renewal can be exercised in tests.
pub const SVID_TTL: Bound = Bound {
    flag: "--svid-ttl",
    min: secs(10),
    max: secs(7 * DAY),
    help: "X.509-SVIDs are short-lived and renewed half-way through their lifetime",
};

/// `ca rotate --overlap` and `ca import --overlap`: 1 second to 365 days (always shorter than
/// [`CA_VALIDITY`]).
pub const CA_OVERLAP: Bound = Bound {
    flag: "--overlap",
    min: secs(1),
    max: secs(365 * DAY),
    help: "how long the previous CA stays trusted; choose it longer than --svid-ttl",
};

/// `run --watch-interval`: 50 ms to 1 hour.
pub const WATCH_INTERVAL: Bound = Bound {
    flag: "--watch-interval",
    min: Duration::from_millis(50),
    max: secs(HOUR),
    help: "how often configuration files and CA state are checked for changes",
};

/// `run --long-poll`: 1 second to 10 minutes.
pub const LONG_POLL: Bound = Bound {
    flag: "--long-poll",
    min: secs(1),
    max: secs(10 * MIN),
    help: "how long a configuration request is held before 304",
};

/// `run --handshake-timeout`, `--header-read-timeout`, `--body-read-timeout`: 100 ms to 5 min.
pub const fn io_timeout(flag: &'static str) -> Bound {
    Bound {
        flag,
        min: Duration::from_millis(100),
        max: secs(5 * MIN),
        help: "how long a client may take before its connection is closed",
    }
}

impl Bound {
    /// `d` if it lies inside the range, else an error naming the flag.
    pub fn check(&self, d: Duration) -> Result<Duration, OutOfRange> {
        if d < self.min || d > self.max {
            return Err(self.out_of_range(fmt(d)));
        }
        Ok(d)
    }

    /// Parses a flag value (`90s`, `10m`, `24h`, `1d`, `500ms`) and checks its range.
    pub fn parse(&self, s: &str) -> Result<Duration, String> {
        let d = parse(s)?.ok_or_else(|| self.out_of_range(s.trim().to_string()).to_string())?;
        if d < self.min || d > self.max {
            return Err(self.out_of_range(s.trim().to_string()).to_string());
        }
        Ok(d)
    }

    fn out_of_range(&self, given: String) -> OutOfRange {
        OutOfRange {
            what: self.flag,
            given,
            min: self.min,
            max: self.max,
            help: self.help,
        }
    }

    /// `now + d`, after checking the range (never panics: the addition is checked).
    pub fn after_now(&self, d: Duration) -> Result<OffsetDateTime, OutOfRange> {
        self.check(d)?;
        OffsetDateTime::now_utc()
            .checked_add(to_time(d).ok_or_else(|| self.out_of_range(fmt(d)))?)
            .ok_or_else(|| self.out_of_range(fmt(d)))
    }
}

/// A `std` duration as a `time` duration (`None` when it does not fit).
pub fn to_time(d: Duration) -> Option<time::Duration> {
    time::Duration::try_from(d).ok()
}

/// Parses `90s`, `10m`, `24h`, `1d`, `500ms` (a bare number is seconds). `Ok(None)` when the
/// number is too large to represent; `Err` when it is not a duration at all.
pub fn parse(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("{s:?}: expected a number and a unit, e.g. 10m, 24h, 90s, 500ms");
    if num.is_empty() {
        return Err(bad());
    }
    let Ok(n) = num.parse::<u64>() else {
        // Only digits: the number is too large for u64.
        return Ok(None);
    };
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}; use ms, s, m, h or d"
            ))
        }
    };
    Ok(n.checked_mul(per_unit_ms).map(Duration::from_millis))
}

/// A duration the way a person writes it (`90s`, `10m`, `30d`, `500ms`).
pub fn fmt(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if s != 0 && s.is_multiple_of(DAY) {
        format!("{}d", s / DAY)
    } else if s != 0 && s.is_multiple_of(HOUR) {
        format!("{}h", s / HOUR)
    } else if s != 0 && s.is_multiple_of(MIN) {
        format!("{}m", s / MIN)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units parse, huge numbers are "too large" rather than a panic, garbage is an error.
    #[test]
    fn parse_handles_units_overflow_and_garbage() {
        assert_eq!(parse("90s"), Ok(Some(secs(90))));
        assert_eq!(parse("10m"), Ok(Some(secs(600))));
        assert_eq!(parse("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(parse("2d"), Ok(Some(secs(2 * DAY))));
        assert_eq!(parse("100000000000000000h"), Ok(None));
        assert_eq!(parse("99999999999999999999999s"), Ok(None));
        assert!(parse("h").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("5y").is_err());
    }

    /// Zero, huge and overflowing values are refused with the flag named; the ends are accepted.
    #[test]
    fn bounds_refuse_zero_and_huge_values_naming_the_flag() {
        for v in ["0s", "0", "100000000h", "99999999999999999999d", "31d"] {
            let e = TOKEN_TTL.parse(v).err().unwrap_or_default();
            assert!(e.contains("--ttl") && e.contains(v), "{v}: {e}");
        }
        assert_eq!(TOKEN_TTL.parse("1m"), Ok(secs(60)));
        assert_eq!(TOKEN_TTL.parse("30d"), Ok(secs(30 * DAY)));
        assert!(SVID_TTL.parse("0s").is_err());
        assert!(SVID_TTL.parse("8d").is_err());
        assert!(CA_OVERLAP.max < CA_VALIDITY);
        assert!(CA_OVERLAP.after_now(secs(u64::MAX)).is_err());
        assert!(CA_OVERLAP.after_now(secs(60)).is_ok());
        assert_eq!(fmt(secs(600)), "10m");
        assert_eq!(fmt(Duration::from_millis(1500)), "1500ms");
    }
}
