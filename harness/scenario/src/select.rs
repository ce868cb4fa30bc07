//! `--label` expressions: `netpol`, `netpol && !slow`, `isolation || services`,
//! `(fabric, snat)` (a comma means and).

use std::fmt;

/// A boolean expression over scenario labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelExpr {
    Label(String),
    Not(Box<LabelExpr>),
    And(Box<LabelExpr>, Box<LabelExpr>),
    Or(Box<LabelExpr>, Box<LabelExpr>),
}

impl LabelExpr {
    /// Parse an expression.
    ///
    /// # Errors
    /// A message naming the position and what was expected.
    pub fn parse(s: &str) -> Result<LabelExpr, String> {
        let toks = lex(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            src: s,
        };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!(
                "unexpected `{}` in label expression `{s}`",
                p.toks[p.pos]
            ));
        }
        Ok(e)
    }

    pub fn matches(&self, labels: &[String]) -> bool {
        match self {
            LabelExpr::Label(l) => labels.iter().any(|x| x == l),
            LabelExpr::Not(e) => !e.matches(labels),
            LabelExpr::And(a, b) => a.matches(labels) && b.matches(labels),
            LabelExpr::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

impl fmt::Display for LabelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelExpr::Label(l) => f.write_str(l),
            LabelExpr::Not(e) => write!(f, "!{e}"),
            LabelExpr::And(a, b) => write!(f, "({a} && {b})"),
            LabelExpr::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

fn lex(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' | ')' | '!' | ',' => {
                out.push(c.to_string());
                i += 1;
            }
            '&' | '|' if chars.get(i + 1) == Some(&c) => {
                out.push(format!("{c}{c}"));
                i += 2;
            }
            c if c.is_ascii_alphanumeric() || "-_./".contains(c) => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "-_./".contains(chars[i]))
                {
                    i += 1;
                }
                out.push(chars[start..i].iter().collect());
            }
            other => {
                return Err(format!(
                    "unexpected `{other}` in label expression `{s}`: use labels, !, &&, ||, commas and parentheses"
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("empty label expression".into());
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<String>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }
    fn or(&mut self) -> Result<LabelExpr, String> {
        let mut e = self.and()?;
        while self.peek() == Some("||") {
            self.pos += 1;
            e = LabelExpr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<LabelExpr, String> {
        let mut e = self.unary()?;
        while matches!(self.peek(), Some("&&") | Some(",")) {
            self.pos += 1;
            e = LabelExpr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<LabelExpr, String> {
        match self.peek() {
            Some("!") => {
                self.pos += 1;
                Ok(LabelExpr::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(")") {
                    return Err(format!("missing `)` in label expression `{}`", self.src));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(t) if !["&&", "||", ",", ")"].contains(&t) => {
                let l = t.to_string();
                self.pos += 1;
                Ok(LabelExpr::Label(l))
            }
            Some(t) => Err(format!("expected a label before `{t}` in `{}`", self.src)),
            None => Err(format!("label expression `{}` ends too early", self.src)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn evaluates() {
        let e = LabelExpr::parse("netpol && !slow").unwrap();
        assert!(e.matches(&l(&["netpol"])));
        assert!(!e.matches(&l(&["netpol", "slow"])));
        let e = LabelExpr::parse("(fabric, snat) || rbac").unwrap();
        assert!(e.matches(&l(&["rbac"])));
        assert!(e.matches(&l(&["fabric", "snat"])));
        assert!(!e.matches(&l(&["fabric"])));
        assert!(LabelExpr::parse("a &&").is_err());
        assert!(LabelExpr::parse("(a").is_err());
        assert!(LabelExpr::parse("a $ b").is_err());
    }
}
