//! PAX extended headers: their records (`"<len> <key>=<value>\n"`, `<len>` counting
//! the whole record) and times, written by the tar writer and read back when a layer
//! is applied.

/// Go's `archive/tar` PAX header name: `<dir>/PaxHeaders.0/<base>`, ASCII, ≤ 100 bytes.
pub(crate) fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let mut out = Vec::new();
    out.extend_from_slice(dir);
    out.extend_from_slice(b"/PaxHeaders.0/");
    out.extend_from_slice(base);
    out.retain(|b| b.is_ascii() && *b != 0);
    out.truncate(100);
    out
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts itself.
pub(crate) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = Vec::with_capacity(len);
    rec.extend_from_slice(len.to_string().as_bytes());
    rec.push(b' ');
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// A PAX time: seconds with up to nine fraction digits, trailing zeros trimmed.
pub(crate) fn format_pax_time(sec: i64, nsec: i64) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    let (sign, sec, nsec) = if sec < 0 {
        ("-", -(sec + 1), 1_000_000_000 - nsec)
    } else {
        ("", sec, nsec)
    };
    let frac = format!("{nsec:09}");
    format!("{sign}{sec}.{}", frac.trim_end_matches('0'))
}

/// Parses PAX records (`"<len> <key>=<value>\n"`, `<len>` counting the whole record),
/// by length, so values may hold any bytes.
pub(crate) fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=')?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
}

/// Parses a PAX time `[-]sec[.frac]`.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    // One sign at most (as Go's `archive/tar`): `--N` would negate i64::MIN.
    if neg && sec.starts_with(['+', '-']) {
        return None;
    }
    let sec: i64 = sec.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: i64 = digits.parse().ok()?;
    if !neg {
        Some((sec, nsec))
    } else if nsec == 0 {
        Some((-sec, 0))
    } else {
        Some((-sec - 1, 1_000_000_000 - nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record(b"path", b"x");
        assert_eq!(r, b"9 path=x\n");
        let long = vec![b'a'; 95];
        let r = pax_record(b"path", &long);
        assert_eq!(r.len(), 105);
        assert!(r.starts_with(b"105 path="));
    }

    #[test]
    fn pax_times() {
        assert_eq!(format_pax_time(5, 0), "5");
        assert_eq!(format_pax_time(5, 500_000_000), "5.5");
        assert_eq!(format_pax_time(-1, 500_000_000), "-0.5");
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time(b"5"), Some((5, 0)));
        assert_eq!(parse_pax_time(b"5.5"), Some((5, 500_000_000)));
        assert_eq!(parse_pax_time(b"-0.5"), Some((-1, 500_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    /// A crash of the `layer_apply` fuzz target (PAX mtime `--9223372036854775808`,
    /// committed as `fuzz/corpus/layer_apply/pax_mtime_two_signs`): the second sign made the seconds
    /// i64::MIN, whose negation overflowed (a panic in debug builds, a wrapped mtime in
    /// release ones). Refused, as Go's `archive/tar` refuses it.
    #[test]
    fn pax_times_with_two_signs_are_refused() {
        assert_eq!(parse_pax_time(b"--9223372036854775808"), None);
        assert_eq!(parse_pax_time(b"--9223372036854775808.5"), None);
        assert_eq!(parse_pax_time(b"-+1"), None);
        assert_eq!(
            parse_pax_time(b"-9223372036854775807.5"),
            Some((i64::MIN, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"+1"), Some((1, 0)));
    }

    #[test]
    fn pax_records_are_parsed_by_length() {
        let mut data = pax_record(b"SCHILY.xattr.user.a", b"x\ny=z\n");
        data.extend(pax_record(b"path", b"a b"));
        let recs = parse_pax(&data).unwrap();
        assert_eq!(
            recs[0],
            (b"SCHILY.xattr.user.a".to_vec(), b"x\ny=z\n".to_vec())
        );
        assert_eq!(recs[1], (b"path".to_vec(), b"a b".to_vec()));
        assert!(parse_pax(b"99 path=x\n").is_none());
    }
}
