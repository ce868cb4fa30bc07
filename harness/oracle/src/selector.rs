//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), compiled once and matched
//! against label maps.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One `matchExpressions` requirement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// The key has one of the values.
    In(String, Vec<String>),
    /// The key is absent or has none of the values.
    NotIn(String, Vec<String>),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
}

impl Requirement {
    /// The label key the requirement is about.
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            // Upstream: NotIn also matches objects without the key.
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A compiled label selector. The empty selector `{}` selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// `matchLabels`, sorted by key.
    pub match_labels: Vec<(String, String)>,
    /// `matchExpressions`.
    pub match_expressions: Vec<Requirement>,
}

impl Selector {
    /// The selector that selects everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector of exactly these labels.
    pub fn from_labels(labels: &Labels) -> Self {
        Selector {
            match_labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Compiles a Kubernetes `LabelSelector`.
    ///
    /// # Errors
    ///
    /// A message naming the bad requirement: an unknown operator, `In`/`NotIn` without values,
    /// or `Exists`/`DoesNotExist` with values.
    pub fn from_k8s(sel: &LabelSelector) -> Result<Self, String> {
        let match_labels = sel
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut match_expressions = Vec::new();
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "matchExpressions `{} {}` needs at least one value",
                        e.key, e.operator
                    ));
                }
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "matchExpressions `{} {}` takes no values: remove `values`",
                        e.key, e.operator
                    ));
                }
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err(format!(
                        "matchExpressions operator `{other}` on key `{}`: use In, NotIn, Exists or DoesNotExist",
                        e.key
                    ));
                }
            };
            match_expressions.push(req);
        }
        Ok(Selector {
            match_labels,
            match_expressions,
        })
    }

    /// Whether the selector selects an object with these labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// `{}`: selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// The same selector with its `matchExpressions` dropped (what the r5.0 translator sees).
    pub fn without_expressions(&self) -> Selector {
        Selector {
            match_labels: self.match_labels.clone(),
            match_expressions: Vec::new(),
        }
    }
}

impl fmt::Display for Selector {
    /// `pod=a,app in (x,y)`, or `{}` for the empty selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut first = true;
        for (k, v) in &self.match_labels {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        for r in &self.match_expressions {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> Selector {
        Selector::from_k8s(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("pod", "a"), ("tier", "web")]);
        assert!(sel(json!({})).matches(&l));
        assert!(sel(json!({"matchLabels": {"pod": "a"}})).matches(&l));
        assert!(!sel(json!({"matchLabels": {"pod": "b"}})).matches(&l));
        assert!(sel(json!({"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]})).matches(&l));
        assert!(
            !sel(
                json!({"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]})
            )
            .matches(&l)
        );
        assert!(
            sel(json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]}))
                .matches(&l)
        );
        assert!(
            sel(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})).matches(&l)
        );
        assert!(
            !sel(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}))
                .matches(&l)
        );
        let both = sel(
            json!({"matchLabels": {"pod": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}),
        );
        assert!(!both.matches(&l), "matchLabels AND matchExpressions");
        assert_eq!(both.to_string(), "pod=a,tier in (db)");
        assert!(both.without_expressions().matches(&l));
    }

    #[test]
    fn rejects_bad_requirements() {
        let bad = |v| Selector::from_k8s(&serde_json::from_value(v).unwrap()).unwrap_err();
        assert!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}))
                .contains("use In")
        );
        assert!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .contains("at least one value")
        );
        assert!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}))
                .contains("no values")
        );
    }
}
