//! Matching a URI against an RFC 6570 URI template, to route
//! `resources/read` (and resource completions) to the server whose
//! `resourceTemplates` produce that URI.
//!
//! Only matching is needed, never expansion. Supported expressions, by
//! operator: `{x}` (one value without `/ ? #`), `{+x}` and `{#x}` (reserved
//! expansion: anything, `#x` after a `#`), `{.x}`, `{/x}`, `{;x}` (label,
//! path segment, path parameter), `{?x,y}` and `{&x}` (query parts: they
//! match the rest of the query, or nothing, since query expansion omits
//! undefined variables). Matching backtracks, but each expression only
//! explores the positions up to the next literal, so it stays fast for the
//! short templates servers use.

use std::collections::HashSet;

/// Templates with more pieces than this are not matched (no real server
/// needs them; they only cost time).
const MAX_PARTS: usize = 64;
/// URIs longer than this are never matched against templates.
const MAX_URI: usize = 8192;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Expr(char),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

impl UriTemplate {
    /// Parses a template; `None` when its braces do not balance.
    pub fn parse(template: &str) -> Option<Self> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}')? + open;
            let body = &rest[open + 1..close];
            if body.contains('{') {
                return None;
            }
            let op = body
                .chars()
                .next()
                .filter(|c| "+#./;?&".contains(*c))
                .unwrap_or(' ');
            parts.push(Part::Expr(op));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') || parts.len() > MAX_PARTS {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Some(Self { parts })
    }

    /// True when `uri` is an expansion of the template.
    pub fn matches(&self, uri: &str) -> bool {
        if uri.len() > MAX_URI {
            return false;
        }
        Matcher {
            parts: &self.parts,
            text: uri.as_bytes(),
            failed: HashSet::new(),
        }
        .at(0, 0)
    }
}

/// Backtracking with a memo of (part, position) pairs known to fail, so a
/// template a hostile server made of many `{+x}` stays polynomial.
struct Matcher<'a> {
    parts: &'a [Part],
    text: &'a [u8],
    failed: HashSet<(usize, usize)>,
}

impl Matcher<'_> {
    fn at(&mut self, part: usize, pos: usize) -> bool {
        if self.failed.contains(&(part, pos)) {
            return false;
        }
        let ok = self.try_at(part, pos);
        if !ok {
            self.failed.insert((part, pos));
        }
        ok
    }

    fn try_at(&mut self, part: usize, pos: usize) -> bool {
        let text = &self.text[pos..];
        let Some(first) = self.parts.get(part) else {
            return text.is_empty();
        };
        match first {
            Part::Literal(lit) => {
                text.starts_with(lit.as_bytes()) && self.at(part + 1, pos + lit.len())
            }
            Part::Expr(op) => {
                let (prefix, stop): (&[u8], &[u8]) = match op {
                    '+' => (b"", b""),
                    '#' => (b"#", b""),
                    '.' => (b".", b"/?#"),
                    '/' => (b"/", b"?#"),
                    ';' => (b";", b"/?#"),
                    '?' | '&' => {
                        // Query parts: the rest of the query, or nothing.
                        if self.at(part + 1, pos) {
                            return true;
                        }
                        if !text.starts_with(b"?") && !text.starts_with(b"&") {
                            return false;
                        }
                        let limit = text.iter().position(|&c| c == b'#').unwrap_or(text.len());
                        return (1..=limit).any(|n| self.at(part + 1, pos + n));
                    }
                    _ => (b"", b"/?#"),
                };
                // An expression may expand to nothing (undefined variable).
                if self.at(part + 1, pos) {
                    return true;
                }
                let Some(body) = text.strip_prefix(prefix) else {
                    return false;
                };
                let start = pos + prefix.len();
                let limit = body
                    .iter()
                    .position(|c| stop.contains(c))
                    .unwrap_or(body.len());
                (1..=limit).any(|n| self.at(part + 1, start + n))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, uri: &str) -> bool {
        UriTemplate::parse(t).expect("template").matches(uri)
    }

    #[test]
    fn simple_expressions_stop_at_slashes() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(m(t, "demo://resource/dynamic/text/42"));
        assert!(!m(t, "demo://resource/dynamic/text/4/2"));
        assert!(!m(t, "demo://resource/dynamic/blob/42"));
        assert!(m("file:///{a}/{b}.txt", "file:///x/y.txt"));
        assert!(!m("file:///{a}/{b}.txt", "file:///x/y.md"));
    }

    #[test]
    fn reserved_and_path_operators() {
        assert!(m("file://{+path}", "file:///home/u/a b.txt"));
        assert!(m("repo://{owner}{/path}", "repo://me/src/lib.rs"));
        assert!(m("x://a{#frag}", "x://a#top"));
        assert!(m("x://a{.ext}", "x://a.json"));
    }

    #[test]
    fn query_parts_are_optional() {
        let t = "search://items{?q,limit}";
        assert!(m(t, "search://items"));
        assert!(m(t, "search://items?q=a&limit=3"));
        assert!(!m(t, "search://other?q=a"));
    }

    #[test]
    fn hostile_templates_stay_fast() {
        let t = "{+a}".repeat(20) + "z";
        let uri = "x".repeat(300);
        assert!(!m(&t, &uri));
        assert!(m(&t, &(uri + "z")));
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(UriTemplate::parse("a{b").is_none());
        assert!(UriTemplate::parse("a}b").is_none());
        assert!(UriTemplate::parse("a{b{c}}").is_none());
        assert!(m("plain://uri", "plain://uri"));
    }
}
