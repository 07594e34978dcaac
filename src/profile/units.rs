//! Human units for profile files: sizes ("512MiB") and durations ("30s").
//!
//! Parsers return a reason string rather than a rich error type because the
//! caller always wraps it with the file name and the key path; the reason must
//! therefore be one line and quote the offending text.

/// Hint appended to every size error so the user sees the accepted forms.
const SIZE_HINT: &str = r#"(use e.g. "512MiB", "2GiB", or a number of bytes)"#;
/// Hint appended to every duration error.
const DURATION_HINT: &str = r#"(use e.g. "500ms", "30s", "5m", "1h30m", or a number of seconds)"#;

/// Size suffixes, matched case-insensitively. Single letters are binary
/// because that is what `ulimit`, `dd` and most people mean by "4G".
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

/// Duration suffixes in milliseconds, matched case-insensitively.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("secs", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("mins", 60_000),
    ("h", 3_600_000),
    ("hr", 3_600_000),
    ("hrs", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a size such as `"4GiB"`, `"1.5 MiB"`, `"100KB"` or `"4096"` into bytes.
///
/// Units are case-insensitive; `K`/`M`/`G`/`T` and `KiB`.. are binary,
/// `KB`/`MB`/`GB`/`TB` decimal. A fraction is allowed with a unit and the
/// result is rounded down to whole bytes. `"unlimited"` is not a size: callers
/// that accept it check for it first (see [`is_unlimited`]).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size {SIZE_HINT}");
    let trimmed = text.trim();
    if is_unlimited(trimmed) {
        return Err(format!(
            "{text:?} is not allowed here; give a size {SIZE_HINT}"
        ));
    }
    let (number, rest) = split_number(trimmed).ok_or_else(bad)?;
    let unit = rest.trim_start().to_ascii_lowercase();
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, m)| *m)
        .ok_or_else(bad)?;
    if multiplier == 1 && number.fraction_digits > 0 {
        return Err(format!(
            "{text:?} is not a whole number of bytes {SIZE_HINT}"
        ));
    }
    number
        .scale(multiplier)
        .ok_or_else(|| format!("{text:?} is too large (at most {} bytes)", u64::MAX))
}

/// Parses a duration such as `"500ms"`, `"30s"`, `"1.5h"` or `"1h30m"` into
/// milliseconds. A bare number means seconds, matching `exec --timeout SECS`.
///
/// Units are case-insensitive. Fractions are rounded down to whole
/// milliseconds. `"unlimited"` is rejected (see [`is_unlimited`]).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration {DURATION_HINT}");
    let trimmed = text.trim();
    if is_unlimited(trimmed) {
        return Err(format!(
            "{text:?} is not allowed here; give a duration {DURATION_HINT}"
        ));
    }
    let too_large = || format!("{text:?} is too long a duration");
    if trimmed.is_empty() {
        return Err(bad());
    }

    // A lone number is seconds; with units, the parts add up ("1h30m").
    if let Some((number, rest)) = split_number(trimmed) {
        if rest.trim().is_empty() {
            return number.scale(1_000).ok_or_else(too_large);
        }
    }
    let mut rest = trimmed;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest).ok_or_else(bad)?;
        let after_number = after_number.trim_start();
        let unit_len = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let unit = after_number[..unit_len].to_ascii_lowercase();
        let multiplier = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?;
        let part = number.scale(multiplier).ok_or_else(too_large)?;
        total = total.checked_add(part).ok_or_else(too_large)?;
        rest = after_number[unit_len..].trim_start();
    }
    Ok(total)
}

/// True for the word that optional limits accept in place of a value.
pub fn is_unlimited(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("unlimited")
}

/// Formats bytes compactly for summaries, e.g. `4GiB`, `1.5MiB`, `100MB`, `123B`.
///
/// The result always parses back to exactly the same number with
/// [`parse_size`], so summaries never hide a rounding.
pub fn format_size(bytes: u64) -> String {
    const BINARY: &[(&str, u64)] = &[
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    const DECIMAL: &[(&str, u64)] = &[
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ];
    // The largest exact unit of each family; the shorter text wins, binary
    // on a tie (1536 is "1.5KiB", 1000000000 is "1GB", not "976562.5KiB").
    let mut best: Option<String> = None;
    for units in [BINARY, DECIMAL] {
        let found = units.iter().find_map(|(name, size)| {
            if bytes < *size {
                return None;
            }
            exact_with_two_decimals(bytes, *size).map(|text| format!("{text}{name}"))
        });
        if let Some(text) = found {
            match &best {
                Some(b) if b.len() <= text.len() => {}
                _ => best = Some(text),
            }
        }
    }
    best.unwrap_or_else(|| format!("{bytes}B"))
}

/// Formats milliseconds for summaries, e.g. `5m`, `1h30m`, `2s500ms`, `0ms`.
///
/// Written as a sum of whole units so that [`parse_duration_ms`] reads it
/// back exactly.
pub fn format_duration_ms(ms: u64) -> String {
    const UNITS: &[(&str, u64)] = &[
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (name, size) in UNITS {
        if rest >= *size {
            out.push_str(&format!("{}{name}", rest / size));
            rest %= size;
        }
    }
    out
}

/// `value / unit` with at most two decimals, if that is exact.
fn exact_with_two_decimals(value: u64, unit: u64) -> Option<String> {
    let hundredths = u128::from(value) * 100;
    let unit = u128::from(unit);
    if hundredths % unit != 0 {
        return None;
    }
    let scaled = hundredths / unit;
    let (whole, frac) = (scaled / 100, scaled % 100);
    Some(match frac {
        0 => format!("{whole}"),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    })
}

/// A non-negative decimal number kept exact as integer digits.
struct Decimal {
    /// All digits, the fraction included, as an integer.
    digits: u128,
    fraction_digits: u32,
}

impl Decimal {
    /// `self * multiplier`, rounded down; `None` when it does not fit in u64.
    fn scale(&self, multiplier: u64) -> Option<u64> {
        let product = self.digits.checked_mul(u128::from(multiplier))?;
        let value = product / 10u128.checked_pow(self.fraction_digits)?;
        u64::try_from(value).ok()
    }
}

/// Splits a leading `123` or `1.25` off `text`. Signs and exponents are not
/// numbers here: a negative size or "1e9" is always a mistake in a profile.
fn split_number(text: &str) -> Option<(Decimal, &str)> {
    let int_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if int_len == 0 {
        return None;
    }
    let mut digits: u128 = 0;
    for b in text[..int_len].bytes() {
        digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let mut rest = &text[int_len..];
    let mut fraction_digits = 0u32;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        if frac_len == 0 {
            return None;
        }
        // More than 9 decimals only adds overflow risk, never meaning.
        if frac_len > 9 {
            return None;
        }
        for b in after_dot[..frac_len].bytes() {
            digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
        }
        fraction_digits = frac_len as u32;
        rest = &after_dot[frac_len..];
    }
    Some((
        Decimal {
            digits,
            fraction_digits,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_plain_and_binary() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
    }

    #[test]
    fn sizes_decimal_units() {
        assert_eq!(parse_size("1KB"), Ok(1_000));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
    }

    #[test]
    fn sizes_case_and_whitespace() {
        assert_eq!(parse_size("  4gib "), Ok(4 << 30));
        assert_eq!(parse_size("4 GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4GIB"), Ok(4 << 30));
        assert_eq!(parse_size("1mb"), Ok(1_000_000));
        assert_eq!(parse_size("\t1k\n"), Ok(1024));
    }

    #[test]
    fn sizes_fractions() {
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("1.0001K"), Ok(1024)); // rounded down
        assert!(parse_size("1.5")
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_size("1.5B").is_err());
        assert!(parse_size("1.K").is_err());
        assert!(parse_size(".5K").is_err());
        assert!(parse_size("1.0000000001G").is_err());
    }

    #[test]
    fn sizes_rejected() {
        for bad in [
            "", " ", "12XB", "-1", "+1", "GiB", "1e9", "4 G i B", "1,000", "0x10", "1GiB5",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("is not a size"), "{bad:?}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn sizes_overflow() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("16777216TiB").unwrap_err().contains("too large"));
        assert!(parse_size("99999999999999999999999999999999999999999999").is_err());
        assert_eq!(parse_size("16777215TiB"), Ok(16_777_215u64 << 40));
    }

    #[test]
    fn unlimited_is_not_a_size_or_duration() {
        assert!(is_unlimited("unlimited"));
        assert!(is_unlimited(" Unlimited "));
        assert!(is_unlimited("UNLIMITED"));
        assert!(!is_unlimited("unlimit"));
        assert!(parse_size("unlimited")
            .unwrap_err()
            .contains("not allowed here"));
        assert!(parse_duration_ms("unlimited")
            .unwrap_err()
            .contains("not allowed here"));
    }

    #[test]
    fn durations_units() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("5min"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
    }

    #[test]
    fn durations_bare_number_is_seconds() {
        assert_eq!(parse_duration_ms("300"), Ok(300_000));
        assert_eq!(parse_duration_ms(" 1.5 "), Ok(1_500));
    }

    #[test]
    fn durations_compound_fraction_case_whitespace() {
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1h 30m 15s"), Ok(5_415_000));
        assert_eq!(parse_duration_ms("2s500ms"), Ok(2_500));
        assert_eq!(parse_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("0.0015s"), Ok(1));
        assert_eq!(parse_duration_ms(" 30S "), Ok(30_000));
        assert_eq!(parse_duration_ms("500MS"), Ok(500));
        assert_eq!(parse_duration_ms("5 m"), Ok(300_000));
    }

    #[test]
    fn durations_rejected() {
        for bad in [
            "",
            "s",
            "5x",
            "-5s",
            "5 seconds later",
            "1h30",
            "5s-",
            "ms5",
            "1e3s",
            "30 s s",
        ] {
            let err = parse_duration_ms(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad:?}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn durations_overflow() {
        assert!(parse_duration_ms("18446744073709551615ms").is_ok());
        assert!(parse_duration_ms("18446744073709551616ms")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration_ms("18446744073709551615s")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration_ms("18446744073709551615")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration_ms("18446744073709551615ms 1ms")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn format_size_is_exact_and_round_trips() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(123), "123B");
        assert_eq!(format_size(1024), "1KiB");
        assert_eq!(format_size(1536), "1.5KiB");
        assert_eq!(format_size(256 << 10), "256KiB");
        assert_eq!(format_size(4 << 30), "4GiB");
        assert_eq!(format_size(1_000_000_000), "1GB");
        assert_eq!(format_size(1000), "1KB");
        for v in [
            0,
            1,
            999,
            1000,
            1023,
            1025,
            1536,
            1 << 20,
            3 << 29,
            123_456_789,
            1 << 62,
            u64::MAX,
        ] {
            assert_eq!(
                parse_size(&format_size(v)),
                Ok(v),
                "{v} -> {}",
                format_size(v)
            );
        }
    }

    #[test]
    fn format_duration_is_exact_and_round_trips() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(500), "500ms");
        assert_eq!(format_duration_ms(2_500), "2s500ms");
        assert_eq!(format_duration_ms(300_000), "5m");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(86_400_000), "1d");
        for v in [0, 1, 999, 1_000, 61_001, 3_600_000, 90_061_001, u64::MAX] {
            assert_eq!(parse_duration_ms(&format_duration_ms(v)), Ok(v));
        }
    }
}
