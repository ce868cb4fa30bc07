//! Kubernetes label selectors (`matchLabels` and `matchExpressions` with `In`, `NotIn`,
//! `Exists`, `DoesNotExist`), evaluated against a label map.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub(crate) type Labels = BTreeMap<String, String>;

/// Whether `sel` selects an object with `labels`. An unknown operator selects nothing.
pub(crate) fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the selector has neither `matchLabels` nor `matchExpressions` (it selects all).
pub(crate) fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The selector with its `matchExpressions` dropped (the r5.0 translator ignores them).
pub(crate) fn without_expressions(sel: &LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: sel.match_labels.clone(),
        match_expressions: None,
    }
}

/// The `matchLabels` pairs, in key order.
pub(crate) fn match_labels(sel: &LabelSelector) -> Vec<(String, String)> {
    sel.match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A canonical text of the selector (for stable identifiers).
pub(crate) fn canonical(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = match_labels(sel)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut exprs: Vec<String> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            let mut v = e.values.clone().unwrap_or_default();
            v.sort();
            format!("{} {} ({})", e.key, e.operator, v.join(","))
        })
        .collect();
    exprs.sort();
    parts.extend(exprs);
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        let sel = |e: LabelSelectorRequirement| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![e]),
        };
        assert!(matches(&sel(expr("app", "In", &["web", "db"])), &l));
        assert!(!matches(&sel(expr("app", "NotIn", &["web"])), &l));
        assert!(matches(&sel(expr("x", "NotIn", &["web"])), &l));
        assert!(matches(&sel(expr("tier", "Exists", &[])), &l));
        assert!(matches(&sel(expr("x", "DoesNotExist", &[])), &l));
        assert!(!matches(&sel(expr("app", "Bogus", &[])), &l));
        let ml = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: None,
        };
        assert!(matches(&ml, &l));
        assert!(!matches(&ml, &labels(&[("app", "db")])));
        assert!(is_empty(&LabelSelector::default()));
        assert!(matches(&LabelSelector::default(), &Labels::new()));
    }
}
