//! Loading scenario files: YAML with bounded aliases and depth, includes relative to the
//! including file, and validation whose every error names `file:line:col` and what to change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::Diagnostic;
use crate::located::{Located, Origin};
use crate::model::{Expectation, ReachabilityCheck, ResourceEntry, Scenario, Step};
use crate::peer::Peer;
use crate::port::did_you_mean;
use crate::table::TruthTable;
use crate::template;

/// Largest scenario or include file read (a guard against reading something that is not one).
pub const MAX_FILE_BYTES: usize = 8 << 20;
/// Deepest YAML nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Deepest include chain accepted.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// A Kubernetes manifest with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub object: serde_json::Value,
    pub origin: Origin,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
    }
    /// Every binding the manifest uses (validated at load time, so this cannot fail).
    pub fn bindings(&self) -> Vec<template::Binding> {
        template::bindings_in(&self.object).unwrap_or_default()
    }
}

/// A validated scenario: includes expanded (every resource entry is a manifest), peers,
/// ports, tables and bindings checked.
#[derive(Clone, Debug)]
pub struct LoadedScenario {
    pub scenario: Scenario,
    pub file: PathBuf,
}

impl LoadedScenario {
    /// The manifests applied before the first step.
    pub fn resources(&self) -> Vec<Manifest> {
        manifests(&self.scenario.resources)
    }

    /// The manifests a step applies.
    pub fn step_manifests(&self, step: &Step) -> Vec<Manifest> {
        manifests(&step.apply)
    }

    /// Every manifest of the scenario in the order they would be applied.
    pub fn all_manifests(&self) -> Vec<Manifest> {
        let mut all = self.resources();
        for s in &self.scenario.steps {
            all.extend(self.step_manifests(s));
        }
        all
    }
}

fn manifests(entries: &[Located<ResourceEntry>]) -> Vec<Manifest> {
    entries
        .iter()
        .filter_map(|e| {
            e.manifest().map(|m| Manifest {
                object: m.clone(),
                origin: e.origin.clone(),
            })
        })
        .collect()
}

/// Load and validate a scenario file.
///
/// # Errors
/// The first problem found, as a [`Diagnostic`] naming `file:line:col` and what to change.
pub fn load_file(path: &Path) -> Result<LoadedScenario, Diagnostic> {
    let text = read_text(path, &[])?;
    load_text(&text, path)
}

/// Load and validate a scenario given as text; `name` is used as its file name (includes
/// resolve relative to it).
///
/// # Errors
/// As [`load_file`].
pub fn load_str(text: &str, name: impl AsRef<Path>) -> Result<LoadedScenario, Diagnostic> {
    load_text(text, name.as_ref())
}

fn read_text(path: &Path, chain: &[String]) -> Result<String, Diagnostic> {
    let fail = |msg: String, hint: &str| {
        let mut d = Diagnostic::new(path, 0, 0, msg).with_hint(hint);
        d.chain = chain.to_vec();
        d
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "check the path; includes are relative to the including file",
        )
    })?;
    if meta.is_dir() {
        return Err(fail(
            format!("{} is a directory", path.display()),
            "name a .yaml file",
        ));
    }
    if meta.len() as usize > MAX_FILE_BYTES {
        return Err(fail(
            format!(
                "{} is {} bytes; scenario files are at most {} bytes",
                path.display(),
                meta.len(),
                MAX_FILE_BYTES
            ),
            "split it with `include:`",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "check permissions",
        )
    })?;
    decode(&bytes, path, chain)
}

fn decode(bytes: &[u8], path: &Path, chain: &[String]) -> Result<String, Diagnostic> {
    match String::from_utf8(bytes.to_vec()) {
        Ok(s) => {
            if let Some(pos) = s.find('\0') {
                let (line, col) = line_col(&s, pos);
                let mut d = Diagnostic::new(
                    path,
                    line,
                    col,
                    "the file contains a NUL byte: it is binary, not YAML",
                )
                .with_hint("point the harness at a YAML scenario file");
                d.chain = chain.to_vec();
                return Err(d);
            }
            Ok(s)
        }
        Err(e) => {
            let pos = e.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..pos]).into_owned();
            let (line, col) = line_col(&valid, pos);
            let mut d = Diagnostic::new(path, line, col, "the file is not UTF-8 text")
                .with_hint("scenario files are UTF-8 YAML; is this a binary file?");
            d.chain = chain.to_vec();
            Err(d)
        }
    }
}

fn line_col(text: &str, byte: usize) -> (u64, u64) {
    let before = &text[..byte.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0) as u64
        + 1;
    (line, col)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_nodes = 2_000_000;
    budget.max_documents = 10_000;
    budget.max_total_scalar_bytes = 32 << 20;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = 200_000;
    opts.alias_limits.max_alias_expansions_per_anchor = 10_000;
    opts.with_snippet = false;
    // YAML 1.2 core booleans only: the upstream fixtures have a namespace named `y`, which
    // YAML 1.1 would read as `true`.
    opts.strict_booleans = true;
    opts
}

/// Turn a serde-saphyr error into a diagnostic with a hint.
fn yaml_error(err: &serde_saphyr::Error, text: &str, path: &Path, chain: &[String]) -> Diagnostic {
    let (line, col) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut message = err.to_string();
    // serde-saphyr prefixes "error: line L column C: "; we print the position ourselves.
    for prefix in ["error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    if let Some(idx) = message.find(": ").filter(|_| message.starts_with("line ")) {
        message = message[idx + 2..].to_string();
    }
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    message = message.lines().next().unwrap_or("").trim().to_string();
    let hint = hint_for(&mut message);
    let mut d = Diagnostic::new(path, line, col, message).with_source(text);
    d.hint = hint;
    d.chain = chain.to_vec();
    d
}

/// A hint for the common serde/YAML messages; may rewrite the message. Every diagnostic
/// gets a hint: the fallback points at the schema.
fn hint_for(message: &mut String) -> Option<String> {
    let m = message.clone();
    if let Some(rest) = m
        .strip_prefix("unknown field `")
        .or_else(|| m.strip_prefix("unknown variant `"))
    {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = tail
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|s| s.trim_matches('`'))
            .filter(|s| !s.is_empty())
            .collect();
        let what = if m.starts_with("unknown field") {
            "field"
        } else {
            "value"
        };
        *message = format!("unknown {what} `{name}`");
        if expected.is_empty() || tail.contains("there are no fields") {
            return Some("remove it: nothing is accepted here".into());
        }
        let dym = did_you_mean(name, &expected);
        let dym = dym.trim().trim_start_matches('(').trim_end_matches(')');
        let list = format!("expected one of: {}", expected.join(", "));
        return Some(if dym.is_empty() {
            list
        } else {
            format!("{dym} {}{}", &list[..1].to_uppercase(), &list[1..])
        });
    }
    if let Some(rest) = m.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return Some(format!("add `{name}:`"));
    }
    if m.starts_with("duplicate mapping key") {
        let key = m
            .trim_start_matches("duplicate mapping key:")
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        *message = format!("duplicate key `{key}`");
        return Some(format!(
            "a mapping may hold `{key}` only once: remove or merge the repeated one"
        ));
    }
    if m.contains("tabs disallowed") || m.contains("tab") && m.contains("indent") {
        return Some("indent with spaces: YAML does not allow tabs in indentation".into());
    }
    if m.starts_with("invalid u") || m.starts_with("invalid i") {
        return Some("expected a whole number in range here".into());
    }
    if m.contains("invalid IPv4 address") {
        return Some("write a dotted IPv4 address such as 10.64.200.10".into());
    }
    if m.contains("invalid IP address syntax")
        || m.contains("invalid IPv4 network")
        || m.contains("prefix length")
    {
        *message = format!("bad CIDR: {m}");
        return Some("write an IPv4 network such as 10.32.0.0/12 (prefix length 0-32)".into());
    }
    if m.contains("alias") || m.contains("budget") {
        *message = format!("aliases expand to too much: {m}");
        return Some("YAML aliases (*name) here expand beyond the harness's limit; write the values out or use fewer nested aliases".into());
    }
    if m.contains("recursion limit") || m.contains("depth") {
        *message = format!("the document nests too deeply: {m}");
        return Some(format!(
            "at most {MAX_DEPTH} levels of nesting are accepted; simplify the structure"
        ));
    }
    if m.contains("multiple YAML documents") || m.contains("More than one") {
        *message = "a scenario file holds one YAML document, this one has several".into();
        return Some(
            "remove the `---` separators; put many manifests in a fixture file and `include:` it"
                .into(),
        );
    }
    if m.starts_with("expected mapping") {
        return Some(
            "a scenario is a mapping: `name:`, `resources:`, `steps:`, … (see `harness schema`)"
                .into(),
        );
    }
    if m.starts_with("expected string") || m.starts_with("invalid type") && m.contains("string") {
        return Some(
            "a plain string is expected here; quote it if it looks like another type".into(),
        );
    }
    if m.starts_with("invalid type") {
        return Some(
            "the value has the wrong type here; see `harness schema` for what this field takes"
                .into(),
        );
    }
    Some("see `harness schema` and docs/scenario-language.md for what is accepted here".into())
}

fn load_text(text: &str, path: &Path) -> Result<LoadedScenario, Diagnostic> {
    let file = Arc::new(path.to_path_buf());
    if text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(path, 0, 0, "scenario text too large")
            .with_hint("split it with `include:`"));
    }
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Err(Diagnostic::new(path, 1, 1, "the scenario is empty")
            .with_hint("a scenario needs at least `name:` and usually `resources:` and `steps:`; see `harness schema`"));
    }
    decode(text.as_bytes(), path, &[])?;
    let mut scenario: Scenario = serde_saphyr::from_str_with_options(text, options())
        .map_err(|e| yaml_error(&e, text, path, &[]))?;

    let mut cx = Context {
        text,
        file: file.clone(),
        stack: vec![canonical(path)],
    };
    scenario.resources = cx.expand(std::mem::take(&mut scenario.resources), &[])?;
    for step in &mut scenario.steps {
        step.value.apply = cx.expand(std::mem::take(&mut step.value.apply), &[])?;
    }
    set_file(&mut scenario, &file);
    validate(&scenario, text, path)?;
    Ok(LoadedScenario {
        scenario,
        file: path.to_path_buf(),
    })
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn set_file(s: &mut Scenario, file: &Arc<PathBuf>) {
    let fill = |o: &mut Origin| {
        if o.file.is_none() {
            o.file = Some(file.clone());
        }
    };
    for r in &mut s.resources {
        fill(&mut r.origin);
    }
    for step in &mut s.steps {
        fill(&mut step.origin);
        for r in &mut step.value.apply {
            fill(&mut r.origin);
        }
        for e in &mut step.value.expect {
            fill(&mut e.origin);
            if let Expectation::Reachability(r) = &mut e.value
                && let Some(t) = &mut r.table
            {
                fill(&mut t.origin);
            }
        }
    }
}

struct Context<'a> {
    text: &'a str,
    file: Arc<PathBuf>,
    /// Canonical paths of the files being expanded, outermost first (cycle detection).
    stack: Vec<PathBuf>,
}

impl Context<'_> {
    /// Replace every `include:` entry by the manifests of the included file, recursively.
    fn expand(
        &mut self,
        entries: Vec<Located<ResourceEntry>>,
        chain: &[String],
    ) -> Result<Vec<Located<ResourceEntry>>, Diagnostic> {
        let mut out = Vec::new();
        for entry in entries {
            match &entry.value {
                ResourceEntry::Manifest(_) => out.push(entry),
                ResourceEntry::Include(rel) => {
                    let file = entry
                        .origin
                        .file
                        .clone()
                        .unwrap_or_else(|| self.file.clone());
                    let here = format!(
                        "{}:{}:{}",
                        file.display(),
                        entry.origin.line,
                        entry.origin.column
                    );
                    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
                    let target = base.join(rel);
                    let mut link = chain.to_vec();
                    link.push(format!("{here} includes {}", target.display()));
                    let at = |msg: String, hint: String| {
                        let mut d = Diagnostic::new(
                            file.as_ref().clone(),
                            entry.origin.line,
                            entry.origin.column,
                            msg,
                        )
                        .with_hint(hint);
                        if Arc::ptr_eq(&file, &self.file) {
                            d = d.with_source(self.text);
                        }
                        d.chain = chain.to_vec();
                        d
                    };
                    if !target.is_file() {
                        return Err(at(
                            format!("included file {} does not exist", target.display()),
                            format!(
                                "include paths are relative to {}; check the spelling",
                                base.display()
                            ),
                        ));
                    }
                    let canon = canonical(&target);
                    if let Some(pos) = self.stack.iter().position(|p| *p == canon) {
                        let cycle: Vec<String> = self.stack[pos..]
                            .iter()
                            .chain(std::iter::once(&canon))
                            .map(|p| p.display().to_string())
                            .collect();
                        return Err(at(
                            format!("include cycle: {}", cycle.join(" -> ")),
                            "remove the include that leads back to a file already being included"
                                .into(),
                        ));
                    }
                    if self.stack.len() > MAX_INCLUDE_DEPTH {
                        return Err(at(
                            format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files"),
                            "flatten the fixture files".into(),
                        ));
                    }
                    let text = read_text(&target, &link)?;
                    let included = Arc::new(target.clone());
                    let docs: Vec<Located<serde_json::Value>> =
                        serde_saphyr::from_multiple_with_options(&text, options())
                            .map_err(|e| yaml_error(&e, &text, &target, &link))?;
                    let mut entries = Vec::new();
                    for doc in docs {
                        let origin = Origin {
                            file: Some(included.clone()),
                            ..doc.origin.clone()
                        };
                        collect_entries(doc.value, origin, &mut entries, &text, &target, &link)?;
                    }
                    self.stack.push(canon);
                    let expanded = self.expand(entries, &link)?;
                    self.stack.pop();
                    out.extend(expanded);
                }
            }
        }
        Ok(out)
    }
}

/// A fixture document is a manifest, an `include:`, a list of those, or a `kind: List`.
fn collect_entries(
    doc: serde_json::Value,
    origin: Origin,
    out: &mut Vec<Located<ResourceEntry>>,
    text: &str,
    file: &Path,
    chain: &[String],
) -> Result<(), Diagnostic> {
    let fail = |msg: String| {
        let mut d = Diagnostic::new(file, origin.line, origin.column, msg)
            .with_source(text)
            .with_hint(
                "a fixture file holds Kubernetes manifests separated by `---`, or a list of them",
            );
        d.chain = chain.to_vec();
        d
    };
    match doc {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Array(items) => {
            for item in items {
                collect_entries(item, origin.clone(), out, text, file, chain)?;
            }
            Ok(())
        }
        serde_json::Value::Object(ref m)
            if m.get("kind").and_then(|k| k.as_str()) == Some("List") =>
        {
            let items = m
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for item in items {
                collect_entries(item, origin.clone(), out, text, file, chain)?;
            }
            Ok(())
        }
        other => {
            let entry = ResourceEntry::try_from(other).map_err(fail)?;
            out.push(Located {
                value: entry,
                origin,
            });
            Ok(())
        }
    }
}

/// Semantic checks after parsing: manifests, peers, tables, bindings, cross references.
fn validate(s: &Scenario, text: &str, path: &Path) -> Result<(), Diagnostic> {
    let here = |o: &Origin, msg: String, hint: &str| -> Diagnostic {
        let file = o
            .file
            .as_ref()
            .map(|f| f.as_ref().clone())
            .unwrap_or_else(|| path.to_path_buf());
        let mut d = Diagnostic::new(file.clone(), o.line, o.column, msg).with_hint(hint);
        if file == path {
            d = d.with_source(text);
        } else if let Ok(t) = std::fs::read_to_string(&file) {
            d = d.with_source(&t);
        }
        d
    };
    let top = Origin {
        file: None,
        line: 1,
        column: 1,
    };
    if s.name.trim().is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(here(
            &find(text, "name:").unwrap_or(top.clone()),
            format!("bad scenario name `{}`", s.name),
            "use letters, digits, '-', '_' and '.' (the name appears in reports and rerun commands)",
        ));
    }
    let nodes = s.cluster.node_names();
    if s.cluster.nodes == 0 || s.cluster.nodes > 64 {
        return Err(here(
            &find(text, "nodes:").unwrap_or(top.clone()),
            format!("cluster.nodes is {}", s.cluster.nodes),
            "use 1 to 64 nodes",
        ));
    }
    let hosts: BTreeSet<&str> = s
        .cluster
        .fabric_hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    let externals: BTreeSet<&str> = s.cluster.external.iter().map(|h| h.name.as_str()).collect();
    if externals.len() != s.cluster.external.len() {
        return Err(here(
            &find(text, "external:").unwrap_or(top.clone()),
            "two external clients share a name".into(),
            "give each external client its own name",
        ));
    }
    if hosts.len() != s.cluster.fabric_hosts.len() {
        return Err(here(
            &find(text, "fabricHosts:").unwrap_or(top.clone()),
            "two fabric hosts share a name".into(),
            "give each fabric host its own name",
        ));
    }
    if s.contrail.mode == crate::model::ContrailMode::Real && s.contrail.api.is_none() {
        return Err(here(
            &find(text, "mode:").unwrap_or(top.clone()),
            "contrail.mode is real but no `api:` URL is given".into(),
            "add `api: http://HOST:8082`",
        ));
    }
    for r in s
        .resources
        .iter()
        .chain(s.steps.iter().flat_map(|st| st.apply.iter()))
    {
        if let ResourceEntry::Manifest(m) = &r.value {
            validate_manifest(m).map_err(|(msg, hint)| here(&r.origin, msg, &hint))?;
            if let Err((string, e)) = template::bindings_in(m) {
                let at = locate_string(r, &string, e.offset).unwrap_or_else(|| r.origin.clone());
                return Err(here(
                    &at,
                    format!("bad binding in `{string}`: {}", e.message),
                    "bindings: {{ podIP NS/POD }}, {{ serviceIP NS/SVC }}, {{ nodePort NS/SVC PORT }}, {{ cidr NS/POD LEN }}, {{ nodeIP NODE }}, {{ hostIP HOST }}, {{ lbIP NS/SVC }}, {{ ingressIP NS/ING }}",
                ));
            }
        }
    }
    let mut step_names = BTreeSet::new();
    for step in &s.steps {
        if crate::model::slug(&step.name).is_empty() {
            return Err(here(
                &step.origin,
                format!("step name `{}` has no letters or digits", step.name),
                "name the step in words: the name becomes part of its checks' ids",
            ));
        }
        for l in step
            .label
            .iter()
            .map(|l| &l.target)
            .chain(step.unlabel.iter().map(|u| &u.target))
        {
            if let crate::model::LabelTarget::Node(n) = l
                && !nodes.contains(n)
            {
                return Err(here(
                    &step.origin,
                    format!("label target node/{n} names a node the cluster does not have"),
                    &format!("the cluster has {}", nodes.join(", ")),
                ));
            }
        }
        for c in &step.service_chain {
            if !is_pod_name(&c.instance) {
                return Err(here(
                    &step.origin,
                    format!(
                        "service chain `{}`: instance `{}` is not NAMESPACE/POD",
                        c.name, c.instance
                    ),
                    "name the pod that acts as the service instance, e.g. blue/fw",
                ));
            }
        }
        if !step_names.insert(crate::model::slug(&step.name)) {
            return Err(here(
                &step.origin,
                format!(
                    "two steps are named `{}` (ignoring case and punctuation)",
                    step.name
                ),
                "step names identify checks in reports and rerun commands; make them unique",
            ));
        }
        for f in &step.fault {
            if let Some(n) = &f.node
                && !nodes.contains(n)
            {
                return Err(here(
                    &step.origin,
                    format!(
                        "fault names node `{n}`, but the cluster has {}",
                        nodes.join(", ")
                    ),
                    "use an existing node or raise cluster.nodes",
                ));
            }
        }
        for e in &step.expect {
            match &e.value {
                Expectation::Reachability(r) => validate_reachability(
                    r, s, &nodes, &hosts, &externals,
                )
                .map_err(|(o, msg, hint)| here(o.as_ref().unwrap_or(&e.origin), msg, &hint))?,
                Expectation::Contrail(list) => {
                    for a in list {
                        if a.kind.is_empty()
                            || !a.kind.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                        {
                            return Err(here(
                                &e.origin,
                                format!("bad Contrail type `{}`", a.kind),
                                "use the VNC type name, e.g. virtual-network, firewall-policy",
                            ));
                        }
                        if a.fq_name.is_empty() {
                            return Err(here(
                                &e.origin,
                                "empty fqName".into(),
                                "give the object's fq name, e.g. [default-domain, k8s-blue, k8s-blue-pod-network]",
                            ));
                        }
                    }
                }
                Expectation::Rbac(r) => {
                    if r.subject.user.is_none()
                        && r.subject.service_account.is_none()
                        && r.subject.groups.is_empty()
                    {
                        return Err(here(
                            &e.origin,
                            "an RBAC check needs a subject".into(),
                            "set `as: {user: NAME}`, `as: {serviceAccount: NS/NAME}` or `as: {groups: [...]}`",
                        ));
                    }
                    if r.allowed.is_empty() && r.denied.is_empty() {
                        return Err(here(
                            &e.origin,
                            "an RBAC check with nothing to check".into(),
                            "list requests under `allowed:` or `denied:`",
                        ));
                    }
                    if let Some(sa) = &r.subject.service_account
                        && sa.split('/').count() != 2
                    {
                        return Err(here(
                            &e.origin,
                            format!("bad service account `{sa}`"),
                            "write NAMESPACE/NAME",
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

type CheckError = (Option<Origin>, String, String);

fn validate_reachability(
    r: &ReachabilityCheck,
    s: &Scenario,
    nodes: &[String],
    hosts: &BTreeSet<&str>,
    externals: &BTreeSet<&str>,
) -> Result<(), CheckError> {
    let err = |msg: String, hint: &str| (None, msg, hint.to_string());
    if !r.peers.is_empty() && (!r.from.is_empty() || !r.to.is_empty()) {
        return Err(err(
            "`peers` and `from`/`to` are both given".into(),
            "use `peers` for a square matrix, or `from` and `to`",
        ));
    }
    let table = match &r.table {
        Some(t) => {
            if r.verdict.is_some() {
                return Err(err(
                    "both `verdict` and `table` are given".into(),
                    "a table states every cell's verdict; remove `verdict`",
                ));
            }
            let parsed = TruthTable::parse(&t.value).map_err(|e| {
                // Block scalars report the first content line; add the table's own offsets.
                let o = Origin { file: t.origin.file.clone(), line: t.origin.line + e.line as u64, column: t.origin.column + e.column as u64 };
                (Some(o), format!("truth table: {}", e.message), "rows = from, columns = to; `.` allow, `X` deny, `D` drop, `R` reject, `?` not checked".to_string())
            })?;
            Some(parsed)
        }
        None => None,
    };
    let (sources, dests): (Vec<Peer>, Vec<Peer>) = match &table {
        Some(t) if r.sources().is_empty() && r.destinations().is_empty() => {
            (t.rows.clone(), t.columns.clone())
        }
        _ => (r.sources().to_vec(), r.destinations().to_vec()),
    };
    if sources.is_empty() || dests.is_empty() {
        return Err(err(
            "a reachability check needs sources and destinations".into(),
            "add `from:` and `to:`, or `peers:`, or a `table:`",
        ));
    }
    if r.ports.is_empty() {
        return Err(err(
            "a reachability check needs `ports`".into(),
            "add e.g. `ports: [TCP/80]`",
        ));
    }
    if let Some(t) = &table {
        let concrete = !sources.iter().chain(dests.iter()).any(Peer::is_wildcard);
        if concrete {
            let rows: BTreeSet<_> = t.rows.iter().collect();
            let cols: BTreeSet<_> = t.columns.iter().collect();
            if rows != sources.iter().collect() || cols != dests.iter().collect() {
                return Err(err(
                    "the truth table's rows and columns differ from the check's peers".into(),
                    "rows must list exactly the sources and columns exactly the destinations (or leave out from/to/peers)",
                ));
            }
        }
    }
    for p in &sources {
        if !p.can_originate() {
            return Err(err(
                format!("`{p}` cannot be a source"),
                "probes start at pods (ns/pod), hosts, nodes or external clients; services and VIPs are destinations",
            ));
        }
    }
    for p in sources
        .iter()
        .chain(dests.iter())
        .chain(r.except.iter().flat_map(|e| [&e.from, &e.to]))
    {
        match p {
            Peer::Host(h) if !hosts.contains(h.as_str()) => {
                return Err(err(
                    format!("`{p}` is not declared"),
                    &format!(
                        "declare it under cluster.fabricHosts{}",
                        did_you_mean(h, &hosts.iter().copied().collect::<Vec<_>>())
                    ),
                ));
            }
            Peer::External(h) if !externals.contains(h.as_str()) => {
                return Err(err(
                    format!("`{p}` is not declared"),
                    &format!(
                        "declare it under cluster.external{}",
                        did_you_mean(h, &externals.iter().copied().collect::<Vec<_>>())
                    ),
                ));
            }
            Peer::Node(n) | Peer::NodePort { node: Some(n), .. } if !nodes.contains(n) => {
                return Err(err(
                    format!("`{p}` names a node the cluster does not have"),
                    &format!("the cluster has {}", nodes.join(", ")),
                ));
            }
            _ => {}
        }
    }
    if let Some(e) = r.except.iter().find(|e| {
        !sources.iter().any(|p| peer_covers(p, &e.from))
            || !dests.iter().any(|p| peer_covers(p, &e.to))
    }) {
        return Err(err(
            format!(
                "the exception {} -> {} is outside the check's matrix",
                e.from, e.to
            ),
            "an exception names a cell of this check: its from among the sources, its to among the destinations",
        ));
    }
    if let Some(path) = &r.path {
        if let Some(b) = &path.backends {
            if let Some(bad) = b.exactly.iter().find(|p| !is_pod_name(p)) {
                return Err(err(
                    format!("backend `{bad}` is not NAMESPACE/POD"),
                    "list backend pods as NAMESPACE/POD",
                ));
            }
            if !dests.iter().all(|d| {
                matches!(
                    d,
                    Peer::Service(_)
                        | Peer::NodePort { .. }
                        | Peer::LoadBalancer(_)
                        | Peer::Ingress(_)
                )
            }) {
                return Err(err(
                    "`path.backends` needs service destinations".into(),
                    "probe svc:, nodeport:, lb: or ingress: peers",
                ));
            }
            if b.exactly.is_empty() && b.at_least.is_none() {
                return Err(err(
                    "`path.backends` says nothing".into(),
                    "add `exactly: [ns/pod, ...]` or `atLeast: N`",
                ));
            }
        }
        if !path.via.is_empty() {
            let chains: BTreeSet<&str> = s
                .steps
                .iter()
                .flat_map(|st| st.service_chain.iter().map(|c| c.name.as_str()))
                .collect();
            for v in &path.via {
                if !chains.contains(v.as_str()) {
                    return Err(err(
                        format!("`via: {v}` names no service chain of this scenario"),
                        "declare it in a step's `serviceChain:`",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether `s` is `NAMESPACE/POD` with valid names.
fn is_pod_name(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(ns, n)| crate::peer::is_dns_label(ns) && crate::peer::is_dns_subdomain(n))
}

/// Whether a (possibly wildcard) peer of the check stands for the peer an exception names.
fn peer_covers(check_peer: &Peer, named: &Peer) -> bool {
    match (check_peer, named) {
        (
            Peer::Pod { namespace, name },
            Peer::Pod {
                namespace: ns2,
                name: n2,
            },
        ) => {
            let part =
                |pat: &crate::peer::NamePattern, other: &crate::peer::NamePattern| match other {
                    crate::peer::NamePattern::Exact(x) => pat.matches(x),
                    crate::peer::NamePattern::Any => *pat == crate::peer::NamePattern::Any,
                };
            part(namespace, ns2) && part(name, n2)
        }
        (
            Peer::NodePort {
                service,
                node: None,
            },
            Peer::NodePort { service: s2, .. },
        ) => service == s2,
        _ => check_peer == named,
    }
}

fn validate_manifest(m: &serde_json::Value) -> Result<(), (String, String)> {
    let obj = m.as_object().ok_or_else(|| {
        (
            "a manifest must be a mapping".to_string(),
            "write apiVersion, kind and metadata".to_string(),
        )
    })?;
    let api = obj.get("apiVersion").and_then(|v| v.as_str());
    let kind = obj.get("kind").and_then(|v| v.as_str());
    if api.is_none_or(str::is_empty) {
        return Err((
            "manifest without `apiVersion`".into(),
            "add e.g. `apiVersion: v1` or `apiVersion: networking.k8s.io/v1`".into(),
        ));
    }
    let Some(kind) = kind.filter(|k| !k.is_empty()) else {
        return Err((
            "manifest without `kind`".into(),
            "add e.g. `kind: Pod`".into(),
        ));
    };
    let meta = obj.get("metadata").and_then(|v| v.as_object());
    let name = meta.and_then(|m| m.get("name")).and_then(|v| v.as_str());
    let generate = meta
        .and_then(|m| m.get("generateName"))
        .and_then(|v| v.as_str());
    match (name, generate) {
        (Some(n), _)
            if crate::peer::is_dns_subdomain(n)
                || n.contains("{{")
                || kind.ends_with("Role")
                || kind.ends_with("Binding") => {}
        (Some(n), _) => {
            return Err((
                format!("{kind} name `{n}` is not a valid Kubernetes name"),
                "use lowercase letters, digits, '-' and '.'".into(),
            ));
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err((
                format!("{kind} manifest without `metadata.name`"),
                "add `metadata: {name: ...}`".into(),
            ));
        }
    }
    if let Some(ns) = meta.and_then(|m| m.get("namespace"))
        && !ns.as_str().is_some_and(crate::peer::is_dns_label)
    {
        return Err((
            format!("bad metadata.namespace {ns}"),
            "a namespace is a DNS label: lowercase letters, digits and '-'".into(),
        ));
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = meta.and_then(|m| m.get(field)) {
            let Some(map) = map.as_object() else {
                return Err((
                    format!("metadata.{field} must be a mapping"),
                    format!("write `{field}: {{key: value}}`"),
                ));
            };
            for (k, v) in map {
                if !v.is_string() {
                    return Err((
                        format!("metadata.{field}.{k} is {v}, not a string"),
                        "quote the value: Kubernetes label and annotation values are strings"
                            .into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Find the first line starting (after indentation) with `key` — a position for errors about
/// top-level fields that carry no span of their own.
fn find(text: &str, key: &str) -> Option<Origin> {
    text.lines().enumerate().find_map(|(i, l)| {
        let t = l.trim_start();
        t.starts_with(key).then(|| Origin {
            file: None,
            line: i as u64 + 1,
            column: (l.len() - t.len()) as u64 + 1,
        })
    })
}

/// Position of `needle` (a string inside a manifest) in the manifest's file, searching from
/// the manifest's own line.
fn locate_string(entry: &Located<ResourceEntry>, needle: &str, offset: usize) -> Option<Origin> {
    let file = entry.origin.file.as_ref()?;
    let text = std::fs::read_to_string(file.as_ref()).ok()?;
    let probe = &needle[offset..];
    let probe = probe.find("}}").map(|e| &probe[..e + 2]).unwrap_or(probe);
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(entry.origin.line.saturating_sub(1) as usize)
    {
        if let Some(col) = line.find(probe) {
            return Some(Origin {
                file: Some(file.clone()),
                line: i as u64 + 1,
                column: line[..col].chars().count() as u64 + 1,
            });
        }
    }
    None
}
