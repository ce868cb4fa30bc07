//! Contrail object assertions, read through the VNC API.
//!
//! Each [`ContrailAssertion`] of a scenario becomes one cell: `from` is the VNC type, `to` the
//! fq name joined by `:`, `port` what is asserted (`exists`, the top-level fields of `has`,
//! `firewallPolicyOrder`). Assertions are *eventually* true: each is re-read until it holds or
//! its `within` (else the check's default) has elapsed, and a passing cell records how long that
//! took in `converged_after_ms`.
//!
//! Outcomes:
//!
//! - passed: the last read satisfied the assertion;
//! - failed: the object was read (or found absent, a 404) and did not satisfy it until the
//!   deadline; the observed value and `observed_detail` show what differs (the actual refs list,
//!   the actual policy order with sequence numbers, …);
//! - inconclusive: the VNC API could not answer (connection refused, timeout, 5xx, 401/403 for
//!   the harness's own client, a malformed answer) at the deadline, or the assertion cannot be
//!   evaluated at all (a type the VNC schema does not know, `firewallPolicyOrder` on a type other
//!   than `application-policy-set`). An API error is never a pass or a fail.
//!
//! # Matching `has`
//!
//! `has` is matched as a subset of the object as the API returns it with its references,
//! back-references and children (`{to, uuid, attr}` each):
//!
//! - a mapping matches when every key it names matches the object's value for that key (a
//!   `null` value matches an absent or null field);
//! - a list matches when every listed item matches *some* item of the object's list;
//! - `to` and `fq_name` are fq names: they match exactly, element by element, and may be
//!   written as a list or as one `a:b:c` string;
//! - scalars are equal, with a number equal to the string spelling that number (the VNC API
//!   keeps some numbers as strings).

use std::time::{Duration, Instant};

use harness_contrail_vnc::{VncClient, VncError, VncObject, schema};
use harness_report::model::{CellResult, Outcome};
use harness_scenario::model::ContrailAssertion;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

/// How often an assertion that does not hold yet is re-read.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest rendering of a JSON value in a cell before it is cut (reports stay readable).
const MAX_RENDERED: usize = 600;

/// Checks each assertion against the VNC API, one cell per assertion, in the order given.
///
/// Assertions are polled concurrently, each until it holds or its own `within` (or
/// `default_within`) elapses, so a check takes as long as its slowest assertion, not the sum.
///
/// # Usage
/// ```no_run
/// # async fn demo(vnc: harness_contrail_vnc::VncClient, a: Vec<harness_scenario::model::ContrailAssertion>) {
/// use std::time::Duration;
/// let cells = harness_runner::checks::contrail::run(&vnc, &a, Duration::from_secs(5)).await;
/// assert_eq!(cells.len(), a.len());
/// # }
/// ```
pub async fn run(
    vnc: &VncClient,
    assertions: &[ContrailAssertion],
    default_within: Duration,
) -> Vec<CellResult> {
    let mut tasks = JoinSet::new();
    for (i, a) in assertions.iter().enumerate() {
        let vnc = vnc.clone();
        let a = a.clone();
        tasks.spawn(async move { (i, check(&vnc, &a, default_within).await) });
    }
    let mut cells: Vec<Option<CellResult>> = vec![None; assertions.len()];
    while let Some(joined) = tasks.join_next().await {
        // A task only ends by returning (`check` does not panic); a join error would mean
        // the runtime is shutting down, and the cell below says so.
        if let Ok((i, cell)) = joined {
            cells[i] = Some(cell);
        }
    }
    cells
        .into_iter()
        .zip(assertions)
        .map(|(cell, a)| {
            cell.unwrap_or_else(|| {
                let mut c = base_cell(a, String::new());
                c.outcome = Outcome::Inconclusive {
                    reason: "the check was cancelled before it finished".into(),
                };
                c
            })
        })
        .collect()
}

/// What one read of the object showed.
enum Observation {
    /// The assertion holds; `observed` says what was seen.
    Holds { observed: String },
    /// It does not hold (yet).
    Differs { observed: String, detail: String },
    /// The API could not answer.
    Unanswered(String),
}

/// Polls one assertion until it holds or its deadline passes.
async fn check(vnc: &VncClient, a: &ContrailAssertion, default_within: Duration) -> CellResult {
    let within = a.within.map(|d| d.0).unwrap_or(default_within);
    let mut cell = base_cell(a, format!("within {}", human(within)));
    if let Err(reason) = evaluable(a) {
        cell.observed = String::new();
        cell.outcome = Outcome::Inconclusive { reason };
        cell.attempts = 0;
        return cell;
    }
    let start = Instant::now();
    let deadline = start + within;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // One read may not outlast the deadline by much: a hung API is an answer too.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2));
        let obs = match tokio::time::timeout(budget, observe(vnc, a)).await {
            Ok(obs) => obs,
            Err(_) => Observation::Unanswered(format!(
                "the VNC API at {} did not answer within {}",
                vnc.base_url(),
                human(budget)
            )),
        };
        let now = Instant::now();
        cell.attempts = attempts;
        match obs {
            Observation::Holds { observed } => {
                cell.observed = observed;
                cell.outcome = Outcome::Passed;
                cell.converged_after_ms = Some(millis(now - start));
                return cell;
            }
            Observation::Differs { observed, detail } if now >= deadline => {
                cell.observed = observed;
                cell.observed_detail = Some(format!(
                    "{detail} (still so after {}, {attempts} reads)",
                    human(now - start)
                ));
                cell.outcome = Outcome::Failed;
                return cell;
            }
            Observation::Unanswered(cause) if now >= deadline => {
                cell.observed = String::new();
                cell.outcome = Outcome::Inconclusive { reason: cause };
                return cell;
            }
            _ => {}
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(now))).await;
    }
}

/// Why an assertion cannot be evaluated at all, in the scenario author's words.
fn evaluable(a: &ContrailAssertion) -> Result<(), String> {
    let Some(info) = schema::resource(&a.kind) else {
        let names: Vec<&str> = schema::resources().map(|i| i.name()).collect();
        let hint = closest(&a.kind, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "scenario error: `{}` is not a VNC type{hint}; use the lowercase hyphenated type, e.g. virtual-network",
            a.kind
        ));
    };
    if a.fq_name.is_empty() || a.fq_name.iter().any(String::is_empty) {
        return Err(
            "scenario error: fqName must name the object, e.g. [default-domain, k8s-blue]".into(),
        );
    }
    if a.firewall_policy_order.is_some() && info.name() != "application-policy-set" {
        return Err(format!(
            "scenario error: firewallPolicyOrder applies to an application-policy-set, not a {}",
            a.kind
        ));
    }
    if !a.exists && (a.has.is_some() || a.firewall_policy_order.is_some()) {
        return Err("scenario error: `exists: false` cannot be combined with `has` or `firewallPolicyOrder`".into());
    }
    if let Some(Value::Object(has)) = &a.has
        && let Some(unknown) = has.keys().find(|k| !info.knows_field(k))
    {
        let mut known: Vec<&str> = info
            .schema
            .props
            .iter()
            .map(|p| p.name)
            .chain(info.schema.refs.iter().map(|r| r.field))
            .chain(info.back_refs.keys().map(String::as_str))
            .chain(info.children.keys().map(String::as_str))
            .collect();
        known.sort_unstable();
        let hint = closest(unknown, &known)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "scenario error: a {} has no field `{unknown}`{hint}",
            a.kind
        ));
    }
    if a.has.as_ref().is_some_and(|h| !h.is_object()) {
        return Err("scenario error: `has` must be a mapping of VNC field names to values".into());
    }
    Ok(())
}

/// The cell before anything was observed.
fn base_cell(a: &ContrailAssertion, timing: String) -> CellResult {
    let mut aspects: Vec<String> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    if let Some(Value::Object(has)) = &a.has {
        aspects.extend(has.keys().cloned());
        expected.push(format!(
            "has {}",
            render(a.has.as_ref().unwrap_or(&Value::Null))
        ));
    } else if let Some(has) = &a.has {
        aspects.push("has".into());
        expected.push(format!("has {}", render(has)));
    }
    if let Some(order) = &a.firewall_policy_order {
        aspects.push("firewallPolicyOrder".into());
        expected.push(format!("policy order [{}]", order.join(", ")));
    }
    if aspects.is_empty() {
        aspects.push("exists".into());
        expected.push(if a.exists { "exists" } else { "absent" }.into());
    }
    let what = if !a.exists {
        "must be absent".to_string()
    } else if a.has.is_none() && a.firewall_policy_order.is_none() {
        "must exist".to_string()
    } else {
        "must exist and contain what is asserted".to_string()
    };
    CellResult {
        from: a.kind.clone(),
        to: a.fq_name.join(":"),
        port: aspects.join(", "),
        expected: expected.join("; "),
        observed: String::new(),
        outcome: Outcome::Inconclusive {
            reason: "not observed".into(),
        },
        explanation: format!(
            "the scenario asserts that {} {} {what} ({timing}), read through the VNC API",
            a.kind,
            a.fq_name.join(":")
        ),
        observed_detail: None,
        converged_after_ms: None,
        attempts: 0,
        loopback: false,
        evidence: Vec::new(),
        rerun: None,
        deviations: Vec::new(),
    }
}

/// Reads the object once and compares it with the assertion.
async fn observe(vnc: &VncClient, a: &ContrailAssertion) -> Observation {
    let obj = match read(vnc, &a.kind, &a.fq_name).await {
        Ok(obj) => obj,
        Err(cause) => return Observation::Unanswered(cause),
    };
    let Some(obj) = obj else {
        return if a.exists {
            Observation::Differs {
                observed: "absent".into(),
                detail: format!(
                    "no {} named {} (fqname-to-id answered 404)",
                    a.kind,
                    a.fq_name.join(":")
                ),
            }
        } else {
            Observation::Holds {
                observed: "absent".into(),
            }
        };
    };
    if !a.exists {
        return Observation::Differs {
            observed: "exists".into(),
            detail: format!(
                "{} {} exists with uuid {}",
                a.kind,
                obj.fq_name_str(),
                obj.uuid
            ),
        };
    }
    let mut seen: Vec<String> = Vec::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    if let Some(has) = &a.has {
        let actual = obj.to_json();
        match mismatch(has, &actual, "") {
            None => seen.push(format!("has {}", render(has))),
            Some(m) => problems.push((m.observed(), m.detail())),
        }
    }
    if let Some(pattern) = &a.firewall_policy_order {
        let order = policy_order(&obj);
        let names: Vec<&str> = order.iter().map(|p| p.name.as_str()).collect();
        let observed = format!("policy order [{}]", names.join(", "));
        if glob_match(pattern, &names) {
            seen.push(observed);
        } else {
            let listed: Vec<String> = order.iter().map(PolicyEntry::describe).collect();
            problems.push((
                observed,
                format!(
                    "firewall_policy_refs by attr.sequence: {}; expected [{}] (`*` = any run of policies)",
                    if listed.is_empty() {
                        "none".to_string()
                    } else {
                        listed.join(", ")
                    },
                    pattern.join(", ")
                ),
            ));
        }
    }
    if problems.is_empty() {
        if seen.is_empty() {
            seen.push("exists".into());
        }
        return Observation::Holds {
            observed: seen.join("; "),
        };
    }
    let (observed, detail): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
    Observation::Differs {
        observed: observed.join("; "),
        detail: detail.join("; "),
    }
}

/// The object with its refs, back-refs and children; `None` when absent (404).
async fn read(
    vnc: &VncClient,
    type_name: &str,
    fq_name: &[String],
) -> Result<Option<VncObject>, String> {
    let unanswered = |e: VncError| format!("the VNC API could not answer: {e}");
    let uuid = match vnc.fqname_to_id(type_name, fq_name).await {
        Ok(uuid) => uuid,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(unanswered(e)),
    };
    match vnc.read(type_name, &uuid).await {
        Ok(obj) => Ok(Some(obj)),
        // Deleted between the two calls.
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(unanswered(e)),
    }
}

/// Where `has` and the object first differ.
struct Mismatch {
    /// Path in the object, e.g. `network_policy_refs` or `id_perms.enable`.
    path: String,
    /// What the scenario expects there.
    expected: Value,
    /// The closest actual value (the whole list when no item matched), `None` when absent.
    actual: Option<Value>,
    /// The expected item was one of a list and matched none of its items.
    in_list: bool,
}

impl Mismatch {
    fn observed(&self) -> String {
        match &self.actual {
            None => format!("{}: absent", self.path),
            Some(v) => format!("{}: {}", self.path, render(&readable(v))),
        }
    }

    fn detail(&self) -> String {
        let want = render(&self.expected);
        match (&self.actual, self.in_list) {
            (None, _) => format!("{} is absent; expected {want}", self.path),
            (Some(v), true) => format!(
                "no item of {} matches {want}; actual items: {}",
                self.path,
                render(&readable(v))
            ),
            (Some(v), false) => {
                format!("{} is {}; expected {want}", self.path, render(&readable(v)))
            }
        }
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The first difference between the expected subset and the actual value, `None` when the
/// subset is contained.
fn mismatch(expected: &Value, actual: &Value, path: &str) -> Option<Mismatch> {
    let here = |actual: Option<&Value>| Mismatch {
        path: if path.is_empty() {
            "object".into()
        } else {
            path.into()
        },
        expected: expected.clone(),
        actual: actual.cloned(),
        in_list: false,
    };
    match expected {
        Value::Object(want) => {
            let Value::Object(have) = actual else {
                return Some(here(Some(actual)));
            };
            for (k, v) in want {
                let p = join_path(path, k);
                match have.get(k) {
                    None | Some(Value::Null) if v.is_null() => {}
                    None => {
                        return Some(Mismatch {
                            path: p,
                            expected: v.clone(),
                            actual: None,
                            in_list: false,
                        });
                    }
                    Some(a) if is_fq_name_key(k) => {
                        if !fq_name_eq(v, a) {
                            return Some(Mismatch {
                                path: p,
                                expected: v.clone(),
                                actual: Some(a.clone()),
                                in_list: false,
                            });
                        }
                    }
                    Some(a) => {
                        if let Some(m) = mismatch(v, a, &p) {
                            return Some(m);
                        }
                    }
                }
            }
            None
        }
        Value::Array(want) => {
            let Value::Array(have) = actual else {
                return Some(here(Some(actual)));
            };
            for item in want {
                if !have.iter().any(|a| mismatch(item, a, path).is_none()) {
                    return Some(Mismatch {
                        path: path.to_string(),
                        expected: item.clone(),
                        actual: Some(actual.clone()),
                        in_list: true,
                    });
                }
            }
            None
        }
        Value::Null => (!actual.is_null()).then(|| here(Some(actual))),
        scalar => (!scalar_eq(scalar, actual)).then(|| here(Some(actual))),
    }
}

/// Keys whose values are fq names, compared exactly.
fn is_fq_name_key(key: &str) -> bool {
    key == "to" || key == "fq_name"
}

/// An fq name written as a list of strings or as one `a:b:c` string.
fn fq_name_of(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(s.split(':').map(str::to_string).collect()),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn fq_name_eq(expected: &Value, actual: &Value) -> bool {
    match (fq_name_of(expected), fq_name_of(actual)) {
        (Some(e), Some(a)) => e == a,
        _ => false,
    }
}

/// Scalar equality; a number equals the string spelling the same number.
fn scalar_eq(expected: &Value, actual: &Value) -> bool {
    if expected == actual {
        return true;
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (expected, actual) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            matches!((number(expected), number(actual)), (Some(a), Some(b)) if a == b)
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

/// The value without the noise a person does not compare: the uuids and hrefs of links.
fn readable(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(readable).collect()),
        Value::Object(m) if m.contains_key("to") => {
            let mut out = Map::new();
            for (k, v) in m {
                if k == "uuid" || k == "href" || (k == "attr" && v.is_null()) {
                    continue;
                }
                if k == "to"
                    && let Some(fq) = fq_name_of(v)
                {
                    out.insert(k.clone(), Value::String(fq.join(":")));
                    continue;
                }
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Compact JSON, cut to [`MAX_RENDERED`] characters.
fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= MAX_RENDERED {
        return s;
    }
    let cut: String = s.chars().take(MAX_RENDERED).collect();
    format!("{cut}…")
}

/// One firewall policy of an application-policy-set, as ordered by the API.
struct PolicyEntry {
    name: String,
    fq_name: String,
    sequence: Option<String>,
}

impl PolicyEntry {
    fn describe(&self) -> String {
        match &self.sequence {
            Some(s) => format!("{} (sequence {s})", self.fq_name),
            None => format!("{} (no sequence)", self.fq_name),
        }
    }
}

/// The APS's `firewall_policy_refs` sorted by `attr.sequence` (numerically when both parse as
/// numbers, else as text; refs without a sequence last, in API order).
fn policy_order(aps: &VncObject) -> Vec<PolicyEntry> {
    let mut entries: Vec<PolicyEntry> = aps
        .refs_of("firewall_policy_refs")
        .iter()
        .map(|r| PolicyEntry {
            name: r.to.last().cloned().unwrap_or_default(),
            fq_name: r.to.join(":"),
            sequence: r
                .attr
                .as_ref()
                .and_then(|a| a.get("sequence"))
                .and_then(|s| match s {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
        })
        .collect();
    entries.sort_by(|a, b| match (&a.sequence, &b.sequence) {
        (Some(x), Some(y)) => match (x.trim().parse::<f64>(), y.trim().parse::<f64>()) {
            (Ok(p), Ok(q)) => p.total_cmp(&q),
            _ => x.cmp(y),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    entries
}

/// Whether `names` matches `pattern`, where `*` matches any run (zero or more) of names.
fn glob_match(pattern: &[String], names: &[&str]) -> bool {
    // matches[j]: pattern[..i] matches names[..j].
    let mut matches = vec![false; names.len() + 1];
    matches[0] = true;
    for p in pattern {
        let mut next = vec![false; names.len() + 1];
        if p == "*" {
            let mut any = false;
            for j in 0..=names.len() {
                any |= matches[j];
                next[j] = any;
            }
        } else {
            for j in 1..=names.len() {
                next[j] = matches[j - 1] && names[j - 1] == p;
            }
        }
        matches = next;
    }
    matches[names.len()]
}

/// The most similar name, when one is close enough to be a typo.
fn closest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (edit_distance(word, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 1..=b.len() {
            let cur = row[j];
            row[j] = if ca == b[j - 1] {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j - 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `850ms`, `5s`, `1.5s`.
fn human(d: Duration) -> String {
    let ms = millis(d);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn glob_over_policy_sequences() {
        let p = s(&["k8s-Ingress", "*", "k8s-denyall", "k8s-allowall"]);
        assert!(glob_match(
            &p,
            &["k8s-Ingress", "k8s-denyall", "k8s-allowall"]
        ));
        assert!(glob_match(
            &p,
            &["k8s-Ingress", "a", "b", "k8s-denyall", "k8s-allowall"]
        ));
        assert!(!glob_match(
            &p,
            &["k8s-Ingress", "k8s-denyall", "a", "k8s-allowall"]
        ));
        assert!(!glob_match(&p, &["k8s-denyall", "k8s-allowall"]));
        assert!(glob_match(&s(&["*"]), &[]));
        assert!(glob_match(&s(&[]), &[]));
        assert!(!glob_match(&s(&[]), &["a"]));
        assert!(glob_match(&s(&["*", "a", "*"]), &["x", "a", "y"]));
    }

    #[test]
    fn subset_matching() {
        let actual = json!({
            "name": "n",
            "virtual_network_network_id": "5",
            "network_policy_refs": [
                {"to": ["default-domain", "p", "np1"], "uuid": "u1", "attr": {"sequence": {"major": 0, "minor": 0}}},
                {"to": ["default-domain", "p", "np2"], "uuid": "u2", "attr": null}
            ],
            "id_perms": {"enable": true, "user_visible": true}
        });
        assert!(mismatch(&json!({"id_perms": {"enable": true}}), &actual, "").is_none());
        assert!(mismatch(&json!({"virtual_network_network_id": 5}), &actual, "").is_none());
        assert!(
            mismatch(
                &json!({"network_policy_refs": [{"to": "default-domain:p:np2"}]}),
                &actual,
                ""
            )
            .is_none()
        );
        assert!(
            mismatch(
                &json!({"network_policy_refs": [{"to": ["default-domain", "p", "np1"], "attr": {"sequence": {"major": 0}}}]}),
                &actual,
                ""
            )
            .is_none()
        );
        // `to` is an exact fq name, not a subset of its elements.
        let m = mismatch(
            &json!({"network_policy_refs": [{"to": ["default-domain", "np1"]}]}),
            &actual,
            "",
        )
        .expect("differs");
        assert_eq!(m.path, "network_policy_refs");
        assert!(
            m.detail().contains("default-domain:p:np1"),
            "{}",
            m.detail()
        );
        assert!(
            !m.detail().contains("u1"),
            "uuids are noise: {}",
            m.detail()
        );
        let m = mismatch(&json!({"id_perms": {"enable": false}}), &actual, "").expect("differs");
        assert_eq!(m.path, "id_perms.enable");
        assert_eq!(m.observed(), "id_perms.enable: true");
        let m = mismatch(&json!({"display_name": "x"}), &actual, "").expect("differs");
        assert_eq!(m.observed(), "display_name: absent");
        assert!(mismatch(&json!({"display_name": null}), &actual, "").is_none());
    }

    #[test]
    fn typo_hints() {
        assert_eq!(
            closest("virtual-netwrk", &["virtual-network", "project"]),
            Some("virtual-network")
        );
        assert_eq!(closest("zzz", &["virtual-network"]), None);
    }
}
