//! Bindings: values the cluster assigns, used inside manifests and checks —
//! `{{ podIP x/b }}`, `{{ serviceIP x/s-x-a }}`, `{{ nodePort x/web http }}`,
//! `{{ cidr x/b 4 }}` (the /4 network containing x/b's IP), `{{ nodeIP node-1 }}`,
//! `{{ hostIP cloud-db }}`, `{{ lbIP x/web }}`, `{{ ingressIP x/web-ing }}`.
//!
//! A binding is resolved once the referenced object has its address, so ipBlock cases run on
//! any cluster.

use std::fmt;

use crate::peer::ObjectName;
use crate::port::{PortRef, did_you_mean};

/// One cluster-assigned value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binding {
    PodIp(ObjectName),
    ServiceIp(ObjectName),
    NodePort(ObjectName, PortRef),
    /// The network of the given prefix length containing the pod's IP.
    Cidr(ObjectName, u8),
    NodeIp(String),
    HostIp(String),
    LoadBalancerIp(ObjectName),
    IngressIp(ObjectName),
}

const FUNCTIONS: &[&str] = &[
    "podIP",
    "serviceIP",
    "nodePort",
    "cidr",
    "nodeIP",
    "hostIP",
    "lbIP",
    "ingressIP",
];

impl Binding {
    /// The object this binding waits for, as `kind ns/name`.
    pub fn subject(&self) -> String {
        match self {
            Binding::PodIp(o) | Binding::Cidr(o, _) => format!("pod {o}"),
            Binding::ServiceIp(o) | Binding::NodePort(o, _) | Binding::LoadBalancerIp(o) => {
                format!("service {o}")
            }
            Binding::IngressIp(o) => format!("ingress {o}"),
            Binding::NodeIp(n) => format!("node {n}"),
            Binding::HostIp(h) => format!("fabric host {h}"),
        }
    }

    /// Whether the rendered value is a number (so a whole-string binding becomes a JSON number).
    pub fn is_numeric(&self) -> bool {
        matches!(self, Binding::NodePort(..))
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::PodIp(o) => write!(f, "{{{{ podIP {o} }}}}"),
            Binding::ServiceIp(o) => write!(f, "{{{{ serviceIP {o} }}}}"),
            Binding::NodePort(o, p) => write!(f, "{{{{ nodePort {o} {p} }}}}"),
            Binding::Cidr(o, l) => write!(f, "{{{{ cidr {o} {l} }}}}"),
            Binding::NodeIp(n) => write!(f, "{{{{ nodeIP {n} }}}}"),
            Binding::HostIp(h) => write!(f, "{{{{ hostIP {h} }}}}"),
            Binding::LoadBalancerIp(o) => write!(f, "{{{{ lbIP {o} }}}}"),
            Binding::IngressIp(o) => write!(f, "{{{{ ingressIP {o} }}}}"),
        }
    }
}

/// A piece of a templated string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Binding(Binding),
}

/// A string with bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// A malformed binding; `offset` is the byte offset of its `{{` in the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

fn object(func: &str, arg: Option<&str>, offset: usize) -> Result<ObjectName, TemplateError> {
    let err = |m: String| TemplateError { offset, message: m };
    let arg = arg.ok_or_else(|| err(format!("`{func}` needs NAMESPACE/NAME")))?;
    let (ns, name) = arg
        .split_once('/')
        .ok_or_else(|| err(format!("`{func} {arg}`: write NAMESPACE/NAME")))?;
    if !crate::peer::is_dns_label(ns) || !crate::peer::is_dns_subdomain(name) {
        return Err(err(format!("`{func} {arg}`: not a valid NAMESPACE/NAME")));
    }
    Ok(ObjectName {
        namespace: ns.into(),
        name: name.into(),
    })
}

fn parse_binding(expr: &str, offset: usize) -> Result<Binding, TemplateError> {
    let err = |m: String| TemplateError { offset, message: m };
    let words: Vec<&str> = expr.split_whitespace().collect();
    let Some((&func, args)) = words.split_first() else {
        return Err(err(format!(
            "empty binding `{{{{ }}}}`: use one of {}",
            FUNCTIONS.join(", ")
        )));
    };
    let arity = |n: usize| -> Result<(), TemplateError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(err(format!(
                "`{func}` takes {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                args.len()
            )))
        }
    };
    let name = |kind: &str| -> Result<String, TemplateError> {
        let a = args[0];
        if crate::peer::is_dns_label(a) {
            Ok(a.to_string())
        } else {
            Err(err(format!("bad {kind} name `{a}`")))
        }
    };
    match func {
        "podIP" => {
            arity(1).and_then(|_| Ok(Binding::PodIp(object(func, args.first().copied(), offset)?)))
        }
        "serviceIP" => arity(1).and_then(|_| {
            Ok(Binding::ServiceIp(object(
                func,
                args.first().copied(),
                offset,
            )?))
        }),
        "lbIP" => arity(1).and_then(|_| {
            Ok(Binding::LoadBalancerIp(object(
                func,
                args.first().copied(),
                offset,
            )?))
        }),
        "ingressIP" => arity(1).and_then(|_| {
            Ok(Binding::IngressIp(object(
                func,
                args.first().copied(),
                offset,
            )?))
        }),
        "nodeIP" => arity(1).and_then(|_| Ok(Binding::NodeIp(name("node")?))),
        "hostIP" => arity(1).and_then(|_| Ok(Binding::HostIp(name("fabric host")?))),
        "nodePort" => {
            arity(2)?;
            let svc = object(func, Some(args[0]), offset)?;
            let port = match args[1].parse::<u16>() {
                Ok(n) => PortRef::Number(n),
                Err(_) if crate::port::is_port_name(args[1]) => PortRef::Name(args[1].into()),
                Err(_) => {
                    return Err(err(format!(
                        "`nodePort`: `{}` is neither a port number nor a port name",
                        args[1]
                    )));
                }
            };
            Ok(Binding::NodePort(svc, port))
        }
        "cidr" => {
            arity(2)?;
            let pod = object(func, Some(args[0]), offset)?;
            match args[1].parse::<u8>() {
                Ok(l) if l <= 32 => Ok(Binding::Cidr(pod, l)),
                _ => Err(err(format!(
                    "`cidr`: prefix length `{}` must be 0-32",
                    args[1]
                ))),
            }
        }
        other => Err(err(format!(
            "unknown binding `{other}`: use one of {}{}",
            FUNCTIONS.join(", "),
            did_you_mean(other, FUNCTIONS)
        ))),
    }
}

impl Template {
    /// Parse `s`; `Ok(None)` when it has no `{{`.
    ///
    /// # Errors
    /// An unterminated `{{`, an unknown function, or bad arguments.
    pub fn parse(s: &str) -> Result<Option<Template>, TemplateError> {
        if !s.contains("{{") {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut rest = s;
        let mut base = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError {
                offset: base + start,
                message: "unterminated binding: `{{` without `}}`".into(),
            })?;
            parts.push(Part::Binding(parse_binding(&after[..end], base + start)?));
            let consumed = start + 2 + end + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Some(Template { parts }))
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.parts.iter().filter_map(|p| match p {
            Part::Binding(b) => Some(b),
            Part::Literal(_) => None,
        })
    }

    /// Render with `resolve`; a lone numeric binding becomes a JSON number.
    pub fn render<E>(
        &self,
        resolve: &mut dyn FnMut(&Binding) -> Result<String, E>,
    ) -> Result<serde_json::Value, E> {
        if let [Part::Binding(b)] = self.parts.as_slice() {
            let v = resolve(b)?;
            if b.is_numeric()
                && let Ok(n) = v.parse::<u64>()
            {
                return Ok(serde_json::Value::from(n));
            }
            return Ok(serde_json::Value::String(v));
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Binding(b) => out.push_str(&resolve(b)?),
            }
        }
        Ok(serde_json::Value::String(out))
    }
}

/// Every binding in a JSON value (strings at any depth), with the string it came from.
pub fn bindings_in(value: &serde_json::Value) -> Result<Vec<Binding>, (String, TemplateError)> {
    let mut out = Vec::new();
    walk(value, &mut |s| {
        if let Some(t) = Template::parse(s).map_err(|e| (s.to_string(), e))? {
            out.extend(t.bindings().cloned());
        }
        Ok(())
    })?;
    Ok(out)
}

fn walk<E>(v: &serde_json::Value, f: &mut dyn FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| walk(x, f)),
        serde_json::Value::Object(m) => m.values().try_for_each(|x| walk(x, f)),
        _ => Ok(()),
    }
}

/// Render every templated string in `value`.
pub fn render_value<E>(
    value: &serde_json::Value,
    resolve: &mut dyn FnMut(&Binding) -> Result<String, E>,
) -> Result<serde_json::Value, E>
where
    E: From<TemplateError>,
{
    Ok(match value {
        serde_json::Value::String(s) => match Template::parse(s)? {
            Some(t) => t.render(resolve)?,
            None => value.clone(),
        },
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| render_value(x, resolve))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(x, resolve)?)))
                .collect::<Result<_, E>>()?,
        ),
        _ => value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("{{ cidr x/b 4 }}").unwrap().unwrap();
        assert_eq!(t.bindings().count(), 1);
        let t = Template::parse("{{ podIP x/b }}/32").unwrap().unwrap();
        let v: Result<_, TemplateError> = t.render(&mut |_| Ok("10.32.0.5".to_string()));
        assert_eq!(v.unwrap(), serde_json::json!("10.32.0.5/32"));
        let t = Template::parse("{{nodePort x/web http}}").unwrap().unwrap();
        let v: Result<_, TemplateError> = t.render(&mut |_| Ok("30080".to_string()));
        assert_eq!(v.unwrap(), serde_json::json!(30080));
        assert_eq!(Template::parse("plain").unwrap(), None);
    }

    #[test]
    fn errors_say_what_to_change() {
        assert!(
            Template::parse("{{ podIp x/b }}")
                .unwrap_err()
                .message
                .contains("did you mean `podIP`")
        );
        assert!(
            Template::parse("{{ podIP x/b")
                .unwrap_err()
                .message
                .contains("unterminated")
        );
        assert!(
            Template::parse("{{ cidr x/b 40 }}")
                .unwrap_err()
                .message
                .contains("0-32")
        );
        assert!(Template::parse("{{ podIP xb }}").is_err());
        let e = Template::parse("ab{{ nope }}").unwrap_err();
        assert_eq!(e.offset, 2);
    }
}
