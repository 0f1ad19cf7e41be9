//! Client server names → stdioproxy server names.
//!
//! Client names are free-form ("Brave Search", "my.server"), while a
//! stdioproxy name is the tool prefix clients see and must match
//! `[A-Za-z0-9_-]+` without `__`, at most 32 characters. Names that are
//! already valid are kept first (so renaming never steals a valid name); the
//! rest are rewritten (other characters become `-`, runs of `_` or `-`
//! collapse, the result is truncated) and made unique with `-2`, `-3`...,
//! in input order, so the same file always gives the same names.

use std::collections::BTreeSet;

use crate::config::ServerName;

/// Longest server name.
const MAX_NAME: usize = 32;

/// Gives each original name a unique valid stdioproxy name. Valid originals
/// keep their name (first come, first served); the rest are sanitized and
/// numbered, in input order.
pub(super) fn assign_names<'a>(originals: impl Iterator<Item = &'a str>) -> Vec<String> {
    let originals: Vec<&str> = originals.collect();
    let mut taken: BTreeSet<String> = crate::config::RESERVED_SERVER_NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut names: Vec<Option<String>> = originals
        .iter()
        .map(|o| (ServerName::new(o).is_ok() && taken.insert(o.to_string())).then(|| o.to_string()))
        .collect();
    for (slot, original) in names.iter_mut().zip(&originals) {
        if slot.is_some() {
            continue;
        }
        let base = sanitize_name(original);
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = with_suffix(&base, n);
            n += 1;
        }
        taken.insert(candidate.clone());
        *slot = Some(candidate);
    }
    names.into_iter().flatten().collect()
}

/// Makes a valid name out of anything: invalid characters become `-`, runs
/// of `-` or `_` collapse (so no `__`), `-`/`_` are trimmed from both ends,
/// and the result is cut to 32 characters. Never empty.
fn sanitize_name(original: &str) -> String {
    let mut out = String::with_capacity(original.len());
    for c in original.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if (c == '-' || c == '_') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let trimmed = trim_separators(&out);
    let cut = trim_separators(&trimmed[..trimmed.len().min(MAX_NAME)]);
    if cut.is_empty() {
        "server".to_string()
    } else {
        cut.to_string()
    }
}

fn trim_separators(s: &str) -> &str {
    s.trim_matches(|c| c == '-' || c == '_')
}

/// `base-N`, with `base` shortened so the whole stays within 32 characters.
fn with_suffix(base: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let keep = MAX_NAME.saturating_sub(suffix.len()).min(base.len());
    let head = trim_separators(&base[..keep]);
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_names() {
        assert_eq!(sanitize_name("Brave Search"), "Brave-Search");
        assert_eq!(sanitize_name("@scope/pkg"), "scope-pkg");
        assert_eq!(sanitize_name("a___b"), "a_b");
        assert_eq!(sanitize_name("a.__.b"), "a-_-b");
        assert_eq!(sanitize_name("é"), "server");
        assert_eq!(sanitize_name(""), "server");
        assert_eq!(sanitize_name("__x__"), "x");
        assert_eq!(sanitize_name("日本語 server"), "server");
        let cut = sanitize_name(&format!("{}_{}", "a".repeat(31), "b"));
        assert_eq!(cut, "a".repeat(31));
        for s in ["a.__.b", "x y z", "ümlaut", "a--b", &"long-".repeat(20)] {
            let n = sanitize_name(s);
            ServerName::new(&n).unwrap_or_else(|e| panic!("{s:?} -> {n:?}: {e}"));
        }
    }

    #[test]
    fn numbering_is_deterministic_and_stays_within_32() {
        let long = "x".repeat(40);
        let names = assign_names([long.as_str(), long.as_str(), "valid", "valid"].into_iter());
        assert_eq!(
            names,
            vec![
                "x".repeat(32),
                format!("{}-2", "x".repeat(30)),
                "valid".to_string(),
                "valid-2".to_string()
            ]
        );
        for n in &names {
            ServerName::new(n).expect("valid");
        }
        // Many collisions: suffixes keep counting.
        let many = assign_names(std::iter::repeat_n("a b", 12));
        assert_eq!(many[0], "a-b");
        assert_eq!(many[11], "a-b-12");
    }
}
