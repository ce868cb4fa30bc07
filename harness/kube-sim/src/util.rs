//! Small helpers the API server needs everywhere: RFC 3339 time, uids, name checks, JSON paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-01-02T03:04:05Z` for a Unix time, the format Kubernetes uses for `metav1.Time`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The current time as a Kubernetes timestamp.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// Parses the `YYYY-MM-DDTHH:MM:SS` prefix of an RFC 3339 time (fractions and zone ignored; the
/// server only ever writes UTC).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Human age like kubectl prints it: `5s`, `3m`, `2h`, `4d`.
pub(crate) fn human_age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let s = (unix_now() - t).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m", s / 60),
        3600..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh random-looking UUID (version 4 layout); unique within the process.
pub(crate) fn new_uid() -> String {
    let n = UID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let a = splitmix(seed ^ n.rotate_left(32));
    let b = splitmix(a ^ n);
    let hi = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// A pseudo-random 64-bit value derived from `x`.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random lowercase alphanumeric suffix of length `n` (for `generateName`).
pub(crate) fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = splitmix(
        UID_COUNTER.fetch_add(1, Ordering::Relaxed)
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
    );
    (0..n)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x = splitmix(x);
            c
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters in order, leniently parsed (`?&a=b` works).
pub(crate) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// `obj.metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `obj.metadata`, created if missing (and replaced if it is not an object).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(map) = obj else {
        unreachable!("just made an object")
    };
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Writes `v` as JSON; a `metadata.managedFields` kept in compact string form (see
/// [`compact_managed_fields`]) is written as the JSON array it encodes.
pub(crate) fn write_json(buf: &mut Vec<u8>, v: &Value) {
    let Value::Object(m) = v else {
        let _ = serde_json::to_writer(&mut *buf, v);
        return;
    };
    let compact = m
        .get("metadata")
        .and_then(|md| md.get("managedFields"))
        .is_some_and(Value::is_string);
    if !compact {
        let _ = serde_json::to_writer(&mut *buf, v);
        return;
    }
    buf.push(b'{');
    for (i, (k, val)) in m.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let _ = serde_json::to_writer(&mut *buf, k);
        buf.push(b':');
        match (k.as_str(), val) {
            ("metadata", Value::Object(meta)) => {
                buf.push(b'{');
                for (j, (mk, mv)) in meta.iter().enumerate() {
                    if j > 0 {
                        buf.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *buf, mk);
                    buf.push(b':');
                    match (mk.as_str(), mv) {
                        ("managedFields", Value::String(raw)) => {
                            buf.extend_from_slice(raw.as_bytes())
                        }
                        _ => {
                            let _ = serde_json::to_writer(&mut *buf, mv);
                        }
                    }
                }
                buf.push(b'}');
            }
            _ => {
                let _ = serde_json::to_writer(&mut *buf, val);
            }
        }
    }
    buf.push(b'}');
}

/// Stores `metadata.managedFields` as one compact JSON string: field sets are many tiny maps,
/// and as a string they take a fraction of the memory. Readers use [`managed_fields`].
pub(crate) fn compact_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata")
        && let Some(mf) = meta.get_mut("managedFields")
        && mf.is_array()
    {
        *mf = Value::String(mf.to_string());
    }
}

/// `metadata.managedFields` as an array, whichever form it is stored in.
pub(crate) fn managed_fields(obj: &Value) -> Option<Value> {
    match obj.get("metadata")?.get("managedFields")? {
        Value::String(raw) => serde_json::from_str(raw).ok(),
        other => Some(other.clone()),
    }
}

/// A copy of `obj` with managedFields in array form (for handing objects to user code).
pub(crate) fn expanded(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(mf) = managed_fields(obj)
        && let Some(Value::Object(meta)) = o.get_mut("metadata")
    {
        meta.insert("managedFields".into(), mf);
    }
    o
}

/// Navigates a dotted path (`spec.nodeName`, `status.phase`) in an object.
pub(crate) fn dotted<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The object at `key` of `map`, inserted as `{}` when absent or not an object.
pub(crate) fn obj_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    let v = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// A JSON value rendered for a table cell or message (strings without quotes).
pub(crate) fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Validates an RFC 1123 label (namespace names). Returns the upstream message on failure.
pub(crate) fn check_dns1123_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else if b.len() > 63 {
        Err("must be no more than 63 characters".into())
    } else {
        Err(DNS1123_LABEL_MSG.into())
    }
}

/// Validates an RFC 1123 subdomain (most object names).
pub(crate) fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if s.is_empty() || s.split('.').any(|l| check_dns1123_label(l).is_err()) {
        return Err(DNS1123_SUBDOMAIN_MSG.into());
    }
    Ok(())
}

/// Validates an RFC 1035 label (service names).
pub(crate) fn check_dns1035_label(s: &str) -> Result<(), String> {
    check_dns1123_label(s).map_err(|_| DNS1035_LABEL_MSG.to_string())?;
    if s.as_bytes()[0].is_ascii_digit() {
        return Err(DNS1035_LABEL_MSG.into());
    }
    Ok(())
}

/// Path-segment names (RBAC objects and most CRs): anything but `.`, `..`, `/` and `%`.
pub(crate) fn check_path_segment_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("name or generateName is required".into());
    }
    if s == "." || s == ".." {
        return Err(format!("may not be '{s}'"));
    }
    if s.contains('/') || s.contains('%') {
        return Err("may not contain '/' or '%'".into());
    }
    Ok(())
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Validates a label or annotation key (`prefix/name`).
pub(crate) fn check_qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && (p.is_empty() || check_dns1123_subdomain(p).is_err())
    {
        return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
    }
    if !is_qualified_name_part(name) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    Ok(())
}

/// Validates a label value (empty allowed).
pub(crate) fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || is_qualified_name_part(s) {
        Ok(())
    } else if s.len() > 63 {
        Err("must be no more than 63 characters".into())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        let t = 1_767_323_045; // 2026-01-02T03:04:05Z
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05Z"), Some(t));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn uids_are_unique_and_shaped() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn names() {
        assert!(check_dns1123_subdomain("a.b-c").is_ok());
        assert!(check_dns1123_subdomain("Bad_Name").is_err());
        assert!(check_dns1035_label("1abc").is_err());
        assert!(check_qualified_name("app.kubernetes.io/name").is_ok());
        assert!(check_qualified_name("-x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a b").is_err());
    }

    #[test]
    fn query_is_lenient() {
        let q = parse_query(Some("&labelSelector=app%3Dweb&watch=true&x"));
        assert_eq!(q[0], ("labelSelector".into(), "app=web".into()));
        assert_eq!(q[2], ("x".into(), String::new()));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
