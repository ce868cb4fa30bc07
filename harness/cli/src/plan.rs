//! `harness plan`: the expected truth tables and the oracle's explanations for every
//! reachability check of a scenario, before any cluster exists.
//!
//! The scenario's steps are replayed on a model of the cluster (apply, delete, label, service
//! chains); addresses are the oracle's planned ones, so bindings such as `{{ podIP x/b }}`
//! resolve the same way on every run.

use std::collections::BTreeMap;

use harness_oracle::{Cluster, Oracle};
use harness_report::truth_table::TruthTable;
use harness_runner::expect::{expected_word, oracle_agrees, stated_verdict, verdict_word};
use harness_runner::reach::summarize;
use harness_scenario::model::{Expectation, LabelTarget, Profile, ReachabilityCheck, ServiceChain};
use harness_scenario::template::{self, Binding};
use harness_scenario::{LoadedScenario, Peer};

use crate::cli::{ExplainCells, PlanArgs};
use crate::exit::Exit;
use crate::term::Term;

pub fn run(args: &PlanArgs, term: &Term) -> Exit {
    let loaded = match harness_scenario::load::load_file(&args.scenario) {
        Ok(l) => l,
        Err(d) => {
            term.diagnostic(&d);
            return Exit::BadInput;
        }
    };
    let profile = match &args.contrail_profile {
        Some(p) => match p.parse::<Profile>() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{} --contrail-profile: {e}", term.red("error:", true));
                return Exit::BadInput;
            }
        },
        None => loaded.scenario.contrail.profile,
    };
    match plan(&loaded, profile) {
        Ok(plan) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan.to_json()).unwrap_or_default()
                );
            } else {
                print!("{}", plan.render(args.explain, term));
            }
            Exit::Ok
        }
        Err(e) => {
            eprintln!("{} {e}", term.red("error:", true));
            Exit::BadInput
        }
    }
}

/// The expected cells of every reachability check.
pub struct Plan {
    pub scenario: String,
    pub profile: Profile,
    pub checks: Vec<PlannedCheck>,
}

pub struct PlannedCheck {
    pub id: String,
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub ports: Vec<String>,
    pub cells: Vec<PlannedCell>,
}

pub struct PlannedCell {
    pub from: String,
    pub to: String,
    pub port: String,
    /// `allow`, `deny`, `drop`, `reject`, or `?` (not checked).
    pub expected: String,
    pub explanation: String,
    pub loopback: bool,
    /// The oracle disagrees with a literal table or fixed verdict of the scenario.
    pub disagrees: Option<String>,
}

/// Replay the scenario on the oracle's model and compute every reachability cell.
///
/// # Errors
/// A message naming what cannot be planned (a peer that names no object, a binding that
/// names nothing, a manifest the oracle cannot read).
pub fn plan(loaded: &LoadedScenario, profile: Profile) -> Result<Plan, String> {
    let s = &loaded.scenario;
    let mut state = State::default();
    state.apply(loaded.resources().into_iter().map(|m| m.object));
    let ids = s.checks();
    let mut checks = Vec::new();
    for (si, step) in s.steps.iter().enumerate() {
        state.apply(loaded.step_manifests(step).into_iter().map(|m| m.object));
        state.chains.extend(step.service_chain.iter().cloned());
        for d in &step.delete {
            state.delete(&d.kind, d.namespace.as_deref(), &d.name);
        }
        for l in &step.label {
            state.relabel(&l.target, &l.set, &l.remove);
        }
        for u in &step.unlabel {
            state.relabel(&u.target, &BTreeMap::new(), &u.keys);
        }
        if !step
            .expect
            .iter()
            .any(|e| matches!(e.value, Expectation::Reachability(_)))
        {
            continue;
        }
        let cluster = state.cluster(loaded)?;
        let oracle = Oracle::new(&cluster, profile);
        for (ci, e) in step.expect.iter().enumerate() {
            let Expectation::Reachability(check) = &e.value else {
                continue;
            };
            let id = ids
                .iter()
                .find(|c| c.step == si && c.index == ci)
                .map(|c| c.id.clone())
                .unwrap_or_default();
            checks.push(
                plan_check(&cluster, &oracle, check, id, &step.name)
                    .map_err(|e| format!("step `{}`: {e}", step.name))?,
            );
        }
    }
    Ok(Plan {
        scenario: s.name.clone(),
        profile,
        checks,
    })
}

fn plan_check(
    cluster: &Cluster,
    oracle: &Oracle<'_>,
    check: &ReachabilityCheck,
    id: String,
    step: &str,
) -> Result<PlannedCheck, String> {
    let table = check
        .table
        .as_ref()
        .and_then(|t| harness_scenario::TruthTable::parse(&t.value).ok());
    let (sources, dests): (Vec<Peer>, Vec<Peer>) = match &table {
        Some(t) if check.sources().is_empty() => (t.rows.clone(), t.columns.clone()),
        _ => (check.sources().to_vec(), check.destinations().to_vec()),
    };
    let mut from_eps = Vec::new();
    for p in &sources {
        let eps = cluster.expand(p).map_err(|e| e.to_string())?;
        from_eps.extend(eps.into_iter().map(|ep| (p.clone(), ep)));
    }
    let mut to_eps = Vec::new();
    for p in &dests {
        let eps = cluster.expand(p).map_err(|e| e.to_string())?;
        to_eps.extend(eps.into_iter().map(|ep| (p.clone(), ep)));
    }
    let mut cells = Vec::new();
    for port in &check.ports {
        for (_, from) in &from_eps {
            for (_, to) in &to_eps {
                let exp = oracle.evaluate(from, to, port);
                let oracle_word = verdict_word(exp.verdict);
                let stated = stated_verdict(
                    check,
                    table.as_ref(),
                    &from.to_string(),
                    &to.to_string(),
                    port,
                );
                let (expected, disagrees) = match stated {
                    None => (oracle_word.to_string(), None),
                    Some(None) => ("?".to_string(), None),
                    Some(Some(v)) => {
                        let word = expected_word(v);
                        let agrees = oracle_agrees(v, exp.verdict);
                        (
                            word.to_string(),
                            (!agrees).then(|| format!("the oracle expects {oracle_word}")),
                        )
                    }
                };
                cells.push(PlannedCell {
                    from: from.to_string(),
                    to: to.to_string(),
                    port: port.to_string(),
                    expected,
                    explanation: exp.explanation.to_string(),
                    loopback: exp.loopback,
                    disagrees,
                });
            }
        }
    }
    let mut rows: Vec<String> = from_eps.iter().map(|(_, e)| e.to_string()).collect();
    rows.dedup();
    let mut columns: Vec<String> = to_eps.iter().map(|(_, e)| e.to_string()).collect();
    columns.dedup();
    let title = check
        .name
        .clone()
        .unwrap_or_else(|| format!("{step}: {} → {}", summarize(&sources), summarize(&dests)));
    Ok(PlannedCheck {
        id,
        title,
        rows,
        columns,
        ports: check.ports.iter().map(|p| p.to_string()).collect(),
        cells,
    })
}

fn mark(word: &str) -> char {
    match word {
        "allow" => '.',
        "drop" => 'D',
        "reject" => 'R',
        "?" => '?',
        _ => 'X',
    }
}

impl Plan {
    pub fn render(&self, explain: ExplainCells, term: &Term) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{} (profile {})\n",
            term.bold(&self.scenario, false),
            self.profile
        ));
        if self.checks.is_empty() {
            out.push_str("no reachability checks\n");
        }
        for c in &self.checks {
            out.push_str(&format!("\n{} {}\n", term.bold(&c.id, false), c.title));
            for (i, port) in c.ports.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let mut t = TruthTable::new(c.rows.clone(), c.columns.clone());
                for cell in c.cells.iter().filter(|x| &x.port == port) {
                    t.set(&cell.from, &cell.to, mark(&cell.expected));
                }
                out.push_str(&format!("{port}\n"));
                out.push_str(&t.render());
            }
            let disagreements: Vec<&PlannedCell> =
                c.cells.iter().filter(|x| x.disagrees.is_some()).collect();
            for cell in &disagreements {
                out.push_str(&format!(
                    "{} {} -> {} {}: the scenario says {}, {} — {}\n",
                    term.red("note:", false),
                    cell.from,
                    cell.to,
                    cell.port,
                    cell.expected,
                    cell.disagrees.as_deref().unwrap_or(""),
                    cell.explanation
                ));
            }
            let shown: Vec<&PlannedCell> = match explain {
                ExplainCells::All => c.cells.iter().collect(),
                ExplainCells::Denied => c.cells.iter().filter(|x| x.expected != "allow").collect(),
                ExplainCells::None => Vec::new(),
            };
            for cell in shown {
                out.push_str(&format!(
                    "  {} -> {} {}: {}{} — {}\n",
                    cell.from,
                    cell.to,
                    cell.port,
                    cell.expected,
                    if cell.loopback {
                        " (loopback: reported, not judged)"
                    } else {
                        ""
                    },
                    cell.explanation
                ));
            }
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario,
            "profile": self.profile.as_str(),
            "checks": self.checks.iter().map(|c| serde_json::json!({
                "id": c.id,
                "title": c.title,
                "rows": c.rows,
                "columns": c.columns,
                "ports": c.ports,
                "cells": c.cells.iter().map(|x| serde_json::json!({
                    "from": x.from, "to": x.to, "port": x.port, "expected": x.expected,
                    "explanation": x.explanation, "loopback": x.loopback, "disagrees": x.disagrees,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The Kubernetes objects as the steps leave them: creation order kept (NetworkPolicy order
/// matters for the r5.0 profile); an apply of an existing object replaces it in place.
#[derive(Default)]
struct State {
    objects: Vec<serde_json::Value>,
    chains: Vec<ServiceChain>,
}

fn key(o: &serde_json::Value) -> (String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

impl State {
    fn apply(&mut self, objs: impl Iterator<Item = serde_json::Value>) {
        for o in objs {
            let k = key(&o);
            match self.objects.iter_mut().find(|x| key(x) == k) {
                Some(slot) => *slot = o,
                None => self.objects.push(o),
            }
        }
    }

    fn delete(&mut self, kind: &str, ns: Option<&str>, name: &str) {
        self.objects.retain(|o| {
            let (k, n, nm) = key(o);
            !(k.eq_ignore_ascii_case(kind)
                && nm == name
                && (ns.is_none() || ns == Some(n.as_str())))
        });
        if kind.eq_ignore_ascii_case("Namespace") {
            self.objects.retain(|o| {
                o.pointer("/metadata/namespace").and_then(|v| v.as_str()) != Some(name)
            });
        }
    }

    fn relabel(&mut self, target: &LabelTarget, set: &BTreeMap<String, String>, remove: &[String]) {
        let (kind, ns, name) = match target {
            LabelTarget::Namespace(n) => ("Namespace", None, n.as_str()),
            LabelTarget::Pod { namespace, name } => {
                ("Pod", Some(namespace.as_str()), name.as_str())
            }
            LabelTarget::Node(_) => return,
        };
        let found = self.objects.iter_mut().find(|o| {
            let (k, n, nm) = key(o);
            k == kind && nm == name && ns.is_none_or(|ns| ns == n)
        });
        let obj = match found {
            Some(o) => o,
            None if kind == "Namespace" => {
                // Namespaces that were only implied (e.g. `default`) can still be labelled.
                self.objects.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
                let Some(o) = self.objects.last_mut() else {
                    return;
                };
                o
            }
            None => return,
        };
        let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) else {
            return;
        };
        let labels = meta
            .entry("labels")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(map) = labels.as_object_mut() {
            for (k, v) in set {
                map.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            for k in remove {
                map.remove(k);
            }
        }
    }

    /// The oracle's model of this state, bindings resolved against planned addresses.
    fn cluster(&self, loaded: &LoadedScenario) -> Result<Cluster, String> {
        let s = &loaded.scenario;
        let plain: Vec<serde_json::Value> = self
            .objects
            .iter()
            .filter(|o| template::bindings_in(o).is_ok_and(|b| b.is_empty()))
            .cloned()
            .collect();
        let mut base =
            Cluster::from_objects(&plain, &s.cluster, &s.contrail).map_err(|e| e.to_string())?;
        for c in &self.chains {
            base.add_service_chain(c).map_err(|e| e.to_string())?;
        }
        if plain.len() == self.objects.len() {
            return Ok(base);
        }
        let mut rendered = Vec::with_capacity(self.objects.len());
        for o in &self.objects {
            let r = template::render_value::<BindingError>(o, &mut |b: &Binding| {
                base.resolve(b)
                    .map_err(|e| BindingError(format!("{b}: {e}")))
            })
            .map_err(|e| e.0)?;
            rendered.push(r);
        }
        let mut full =
            Cluster::from_objects(&rendered, &s.cluster, &s.contrail).map_err(|e| e.to_string())?;
        for c in &self.chains {
            full.add_service_chain(c).map_err(|e| e.to_string())?;
        }
        Ok(full)
    }
}

struct BindingError(String);

impl From<template::TemplateError> for BindingError {
    fn from(e: template::TemplateError) -> Self {
        BindingError(e.message)
    }
}
