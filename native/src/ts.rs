//! RFC 3339 timestamps as msgspec's `datetime` decoder (tz=True) accepts them, to
//! integer microseconds since the Unix epoch (UTC), plus the contract's year check.
//!
//! Accepted (measured against msgspec 0.19, see bench.py's parity cases):
//! `YYYY-MM-DD` then `T`, `t` or a space, `HH:MM:SS`, an optional fraction of one or
//! more digits (beyond 6 digits rounded half-up on the 7th digit), then `Z`, `z`,
//! `+HH:MM`, `-HH:MM` or `+HHMM`/`-HHMM` (hours 0..23, minutes 0..59). Calendar
//! checked (leap years), hour 0..23, minute 0..59, second 0..59 (no leap second).
//! Naive timestamps are invalid. The year check (1000..=9998) applies to the year as
//! written (local to its offset), after rounding, as `decode_event` does on the
//! aware datetime.

pub const US_PER_DAY: i64 = 86_400_000_000;

#[inline]
fn d2(b: &[u8], i: usize) -> Option<u32> {
    let x = b[i].wrapping_sub(b'0');
    let y = b[i + 1].wrapping_sub(b'0');
    if x < 10 && y < 10 {
        Some(x as u32 * 10 + y as u32)
    } else {
        None
    }
}

#[inline]
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[inline]
fn year_of_day(z: i64) -> i64 {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + if m <= 2 { 1 } else { 0 }
}

#[inline]
fn leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Parse an RFC 3339 timestamp; `None` if msgspec would reject it or the year
/// (as written, after rounding) is outside 1000..=9998.
#[inline]
pub fn parse(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let y = d2(b, 0)? * 100 + d2(b, 2)?;
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let mo = d2(b, 5)?;
    let d = d2(b, 8)?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let h = d2(b, 11)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mi = d2(b, 14)?;
    let s = d2(b, 17)?;
    if !(1..=12).contains(&mo) || d == 0 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    const DIM: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let dim = if mo == 2 && leap(y) { 29 } else { DIM[mo as usize - 1] };
    if d > dim {
        return None;
    }
    let mut i = 19;
    let mut us: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            let n = i - start;
            if n < 6 {
                us = us * 10 + (b[i] - b'0') as i64;
            } else if n == 6 && b[i] >= b'5' {
                us += 1; // half-up on the 7th digit; may carry to 1_000_000
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        if n < 6 {
            for _ in n..6 {
                us *= 10;
            }
        }
    }
    if i >= b.len() {
        return None;
    }
    let offset_us: i64 = match b[i] {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let rest = &b[i + 1..];
            let (oh, om, used) = if rest.len() >= 5 && rest[2] == b':' {
                (d2(rest, 0)?, d2(rest, 3)?, 5)
            } else if rest.len() >= 4 {
                (d2(rest, 0)?, d2(rest, 2)?, 4)
            } else {
                return None;
            };
            if oh > 23 || om > 59 {
                return None;
            }
            i += 1 + used;
            let v = (oh as i64 * 60 + om as i64) * 60_000_000;
            if sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    let day = days_from_civil(y as i64, mo, d);
    let local = day * US_PER_DAY
        + (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1_000_000
        + us;
    let year = if us == 1_000_000 { year_of_day(local.div_euclid(US_PER_DAY)) } else { y as i64 };
    if !(1000..=9998).contains(&year) {
        return None;
    }
    Some(local - offset_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn basics() {
        assert_eq!(parse(b"2024-01-01T00:00:00Z"), Some(1704067200000000));
        assert_eq!(parse(b"2024-01-01T00:00:00.0000005Z"), Some(1704067200000001));
        assert_eq!(parse(b"2024-01-01T00:00:00.00000049999999Z"), Some(1704067200000000));
        assert_eq!(parse(b"2024-01-01T00:00:00.5+00:30"), Some(1704065400500000));
        assert_eq!(parse(b"9998-12-31T23:59:59.9999995Z"), None);
        assert_eq!(parse(b"1000-01-01T00:00:00+01:00"), Some(-30610227600000000));
        assert_eq!(parse(b"9998-12-31T23:00:00-05:00"), Some(253370779200000000));
        assert_eq!(parse(b"2024-02-30T00:00:00Z"), None);
        assert_eq!(parse(b"2000-02-29T00:00:00Z"), Some(951782400000000));
        assert_eq!(parse(b"1900-02-29T00:00:00Z"), None);
        assert_eq!(parse(b"2024-01-01T00:00:00"), None);
    }
}
