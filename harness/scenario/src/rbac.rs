//! RBAC requests written the way `kubectl auth can-i` takes them: `get pods -n blue`,
//! `create networkpolicies.networking.k8s.io -n blue`, `get pods/log web -n x`, `get /healthz`.

use std::fmt;
use std::str::FromStr;

use crate::port::did_you_mean;

/// Verbs Kubernetes RBAC knows.
pub const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "impersonate",
    "bind",
    "escalate",
    "use",
    "approve",
    "sign",
    "*",
];

/// One authorization question.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RbacRequest {
    pub verb: String,
    /// Plural resource (`pods`); `None` for a non-resource URL.
    pub resource: Option<String>,
    pub subresource: Option<String>,
    /// API group; `None` means "the group this resource lives in" (the core group for the
    /// built-in core kinds), resolved by whoever asks.
    pub group: Option<String>,
    pub name: Option<String>,
    /// `None` = cluster scope (or all namespaces).
    pub namespace: Option<String>,
    /// For non-resource requests: the URL path.
    pub path: Option<String>,
}

impl FromStr for RbacRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write VERB RESOURCE[/SUBRESOURCE] [NAME] [-n NAMESPACE], e.g. `get pods -n blue` or `delete namespaces`";
        let mut words = s.split_whitespace();
        let verb = words
            .next()
            .ok_or_else(|| format!("empty RBAC request: {hint}"))?
            .to_string();
        if !VERBS.contains(&verb.as_str()) {
            return Err(format!(
                "unknown verb `{verb}` in `{s}`{}: {hint}",
                did_you_mean(&verb, VERBS)
            ));
        }
        let target = words
            .next()
            .ok_or_else(|| format!("`{s}` names no resource: {hint}"))?;
        let mut req = RbacRequest {
            verb,
            resource: None,
            subresource: None,
            group: None,
            name: None,
            namespace: None,
            path: None,
        };
        if target.starts_with('/') {
            req.path = Some(target.to_string());
        } else {
            let (res, sub) = match target.split_once('/') {
                Some((r, sub)) => (r, Some(sub.to_string())),
                None => (target, None),
            };
            let (res, group) = match res.split_once('.') {
                Some((r, g)) => (r, Some(g.to_string())),
                None => (res, None),
            };
            if res.is_empty() || !res.chars().all(|c| c.is_ascii_lowercase() || c == '*') {
                return Err(format!(
                    "bad resource `{target}` in `{s}`: use the plural lowercase name, e.g. pods, networkpolicies"
                ));
            }
            req.resource = Some(res.to_string());
            req.subresource = sub;
            req.group = group;
        }
        while let Some(w) = words.next() {
            match w {
                "-n" | "--namespace" => {
                    let ns = words
                        .next()
                        .ok_or_else(|| format!("`{w}` needs a namespace in `{s}`"))?;
                    req.namespace = Some(ns.to_string());
                }
                "-A" | "--all-namespaces" => req.namespace = None,
                w if w.starts_with("--namespace=") => {
                    req.namespace = Some(w["--namespace=".len()..].to_string())
                }
                w if w.starts_with('-') => {
                    return Err(format!(
                        "unknown option `{w}` in `{s}`: only -n NAMESPACE and -A are understood"
                    ));
                }
                w if req.name.is_none() && req.path.is_none() => req.name = Some(w.to_string()),
                w => return Err(format!("unexpected `{w}` in `{s}`: {hint}")),
            }
        }
        Ok(req)
    }
}

impl fmt::Display for RbacRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verb)?;
        if let Some(p) = &self.path {
            return write!(f, " {p}");
        }
        if let Some(r) = &self.resource {
            write!(f, " {r}")?;
            if let Some(g) = &self.group {
                write!(f, ".{g}")?;
            }
            if let Some(sub) = &self.subresource {
                write!(f, "/{sub}")?;
            }
        }
        if let Some(n) = &self.name {
            write!(f, " {n}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " -n {ns}")?;
        }
        Ok(())
    }
}

crate::string_serde!(
    RbacRequest,
    "RbacRequest",
    "VERB RESOURCE[.GROUP][/SUBRESOURCE] [NAME] [-n NAMESPACE], or VERB /URL-PATH.",
    "^\\S+ \\S+.*$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_style() {
        let r: RbacRequest = "get pods -n blue".parse().unwrap();
        assert_eq!(r.verb, "get");
        assert_eq!(r.resource.as_deref(), Some("pods"));
        assert_eq!(r.namespace.as_deref(), Some("blue"));
        let r: RbacRequest = "get pods/log web -n x".parse().unwrap();
        assert_eq!(r.subresource.as_deref(), Some("log"));
        assert_eq!(r.name.as_deref(), Some("web"));
        let r: RbacRequest = "create networkpolicies.networking.k8s.io -n blue"
            .parse()
            .unwrap();
        assert_eq!(r.group.as_deref(), Some("networking.k8s.io"));
        assert_eq!(
            r.to_string(),
            "create networkpolicies.networking.k8s.io -n blue"
        );
        let r: RbacRequest = "get /healthz".parse().unwrap();
        assert_eq!(r.path.as_deref(), Some("/healthz"));
    }

    #[test]
    fn rejects_with_hints() {
        assert!(
            "gte pods"
                .parse::<RbacRequest>()
                .unwrap_err()
                .contains("did you mean `get`")
        );
        assert!("get".parse::<RbacRequest>().is_err());
        assert!("get pods -n".parse::<RbacRequest>().is_err());
        assert!("get Pods".parse::<RbacRequest>().is_err());
    }
}
