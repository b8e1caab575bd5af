//! Node-wide facts every event carries: the node name and the clock that turns kernel
//! timestamps into wall-clock time.
use crate::process::procfs;

/// Node-wide facts used while enriching.
#[derive(Debug, Clone)]
pub(crate) struct NodeContext {
    pub(crate) node: String,
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, ns: turns kernel timestamps into wall-clock time.
    pub(crate) boot_to_wall_ns: i128,
}

impl NodeContext {
    pub(crate) fn detect(node: Option<String>) -> NodeContext {
        let node = node
            .or_else(|| std::env::var("NODE_NAME").ok())
            .unwrap_or_else(procfs::hostname);
        NodeContext {
            node,
            boot_to_wall_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

thread_local! {
    /// The last second formatted and its text up to the fraction (`2026-12-03T21:40:07.`):
    /// events come in time order, so most share their second with the one before.
    static LAST_SECOND: std::cell::Cell<(i64, [u8; 20])> = const { std::cell::Cell::new((i64::MIN, [0; 20])) };
}

/// RFC 3339 UTC with nanoseconds from ns since the epoch.
pub(crate) fn rfc3339(ns: i128) -> String {
    // 64-bit division where the instant fits (until 2262): 128-bit division is a library call
    // that cost more than the rest of the formatting.
    let (secs, nanos) = match i64::try_from(ns) {
        Ok(n) => (
            n.div_euclid(1_000_000_000),
            n.rem_euclid(1_000_000_000) as u32,
        ),
        Err(_) => (
            ns.div_euclid(1_000_000_000) as i64,
            ns.rem_euclid(1_000_000_000) as u32,
        ),
    };
    let (last, prefix) = LAST_SECOND.get();
    if last == secs {
        let mut b = [0u8; 30];
        b[..20].copy_from_slice(&prefix);
        let mut v = nanos;
        for i in (20..29).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        b[29] = b'Z';
        // SAFETY: the prefix was cached only when ASCII (below) and the rest are ASCII digits
        // and `Z`: valid UTF-8. (Validating 30 bytes cost a third of this function.)
        return unsafe { String::from_utf8_unchecked(b.to_vec()) };
    }
    let s = rfc3339_full(secs, nanos);
    if let Some(p) = s
        .as_bytes()
        .get(..20)
        .and_then(|p| <[u8; 20]>::try_from(p).ok())
        && s.len() == 30
        && p.is_ascii()
    {
        LAST_SECOND.set((secs, p));
    }
    s
}

/// [`rfc3339`] computed from the calendar.
fn rfc3339_full(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if !(0..=9999).contains(&y) {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
    }
    // Every event carries this string: written digit by digit, without the formatting
    // machinery (it was a tenth of the pipeline's time).
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    let field = |v: i64| u64::try_from(v).unwrap_or(0);
    put(0, 4, field(y));
    put(5, 2, field(m));
    put(8, 2, field(d));
    put(11, 2, field(sod / 3600));
    put(14, 2, field(sod % 3600 / 60));
    put(17, 2, field(sod % 60));
    put(20, 9, u64::from(nanos));
    // ASCII digits and separators only: always UTF-8.
    String::from_utf8(b.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cached_second_agrees_with_the_calendar() {
        for ns in [
            1_700_000_000_123_456_789i128,
            1_700_000_000_999_999_999,
            1_700_000_000_000_000_001,
            1_700_000_001_000_000_000,
            1_699_999_999_500_000_000,
            1_700_000_001_000_000_007,
            // Before the epoch, and beyond 64-bit nanoseconds (the 128-bit path).
            -1,
            -1_000_000_001,
            i128::from(i64::MAX) + 1_000_000_123,
        ] {
            let full = rfc3339_full(
                ns.div_euclid(1_000_000_000) as i64,
                ns.rem_euclid(1_000_000_000) as u32,
            );
            // The first call may compute it, the second comes from the cached second.
            assert_eq!(rfc3339(ns), full);
            assert_eq!(rfc3339(ns), full);
        }
    }

    use super::*;

    #[test]
    fn rfc3339_round_trips_through_the_inverse_algorithm() {
        // Instants spread over four centuries (odd seconds and nanoseconds, leap days among
        // them), checked against days-from-civil, a different algorithm from the one above.
        let mut ns: i128 = 0;
        for _ in 0..20_000 {
            let s = rfc3339(ns);
            assert_eq!(s.len(), 30, "{s}");
            let back = parse(&s);
            assert_eq!(back, ns, "{s}");
            ns += 7_307_123_456_789_011;
        }
    }

    /// The inverse, by the civil-from-days algorithm run backwards (the oracle of the test).
    fn parse(s: &str) -> i128 {
        let n = |a: usize, b: usize| s[a..b].parse::<i64>().expect("digits");
        let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
        i128::from(secs) * 1_000_000_000 + i128::from(n(20, 29))
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
