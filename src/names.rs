//! Exposed names: `<server>__<tool>`, always valid for real hosts.
//!
//! Claude, OpenAI and Cursor accept tool names matching
//! `^[A-Za-z0-9_-]{1,64}$`. A name that already fits is exposed unchanged
//! after the prefix. Any other name (odd characters, too long) is sanitised,
//! shortened and given a short hash of its original spelling, so the exposed
//! name is deterministic: it depends only on the server and the tool name,
//! never on which other tools exist or the order servers started in.
//!
//! A client can ask for a tighter budget (`stdioproxy-shim --name-max N`,
//! because the host prepends its own prefix): [`fit_names`] shortens a
//! session's names the same way (sanitise, truncate, `_` + hash), keeps
//! every name that already fits, and makes the set unique.

/// Separator between server and tool.
pub const SEPARATOR: &str = "__";
/// Longest exposed name.
pub const MAX_LEN: usize = 64;
const HASH_HEX: usize = 8;

/// True for names real hosts accept.
pub fn is_valid_exposed(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LEN && name.bytes().all(valid_byte)
}

fn valid_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// True when `name` ends like a hashed name (`_` and 8 lowercase hex
/// digits): such a plain name is hashed too, so it can never equal the
/// hashed name of another tool.
fn looks_hashed(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > HASH_HEX
        && b[b.len() - HASH_HEX - 1] == b'_'
        && b[b.len() - HASH_HEX..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The name clients see for `original` from `server`.
pub fn exposed_name(server: &str, original: &str) -> String {
    let plain = format!("{server}{SEPARATOR}{original}");
    if !original.is_empty() && is_valid_exposed(&plain) && !looks_hashed(original) {
        return plain;
    }
    let mut out: String = format!("{server}{SEPARATOR}");
    out.extend(original.chars().map(|c| {
        if c.is_ascii() && valid_byte(c as u8) {
            c
        } else {
            '_'
        }
    }));
    // Every char is ASCII now, so byte truncation is on a char boundary.
    out.truncate(MAX_LEN - HASH_HEX - 1);
    let hash = fnv1a64(format!("{server}\0{original}").as_bytes());
    out.push('_');
    out.push_str(&format!("{:016x}", hash)[..HASH_HEX]);
    out
}

/// Smallest name budget a session may ask for: room for one character, `_`
/// and a 6-digit hash.
pub const MIN_BUDGET: usize = crate::fit_options::NAME_MAX_MIN;
/// Largest name budget a session may ask for.
pub const MAX_BUDGET: usize = crate::fit_options::NAME_MAX_MAX;

/// `name` within `max` characters (at least [`MIN_BUDGET`]), matching
/// `^[A-Za-z0-9_-]+$`: unchanged when it already does, else sanitised,
/// truncated and given `_` and a hash of `name` (8 hex digits; fewer only
/// below 10 characters). `salt` > 0 picks another hash, for collisions.
fn fit_one(name: &str, max: usize, salt: u32) -> String {
    let max = max.max(MIN_BUDGET);
    if salt == 0 && !name.is_empty() && name.len() <= max && name.bytes().all(valid_byte) {
        return name.to_string();
    }
    let hex = HASH_HEX.min(max - 2);
    let keep = max - 1 - hex;
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && valid_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .take(keep)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    let mut key = name.as_bytes().to_vec();
    if salt > 0 {
        key.push(0);
        key.extend_from_slice(salt.to_string().as_bytes());
    }
    out.push('_');
    out.push_str(&format!("{:016x}", fnv1a64(&key))[..hex]);
    out
}

/// Fits every name of one namespace (a session's tools, or its prompts)
/// into `max` characters: the result is parallel to `names`, each valid and
/// at most `max` long, and all distinct when the inputs are. A name that
/// already fits is kept; the others are shortened with a hash of their full
/// spelling, so the result depends only on the names, never on their order
/// (a collision, which takes a 32-bit hash clash or a name that looks
/// exactly like another's shortening, is settled by rehashing the
/// shortened names in sorted order of their originals).
pub fn fit_names(names: &[&str], max: usize) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|n| fit_one(n, max, 0)).collect();
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Names kept as they are win over shortened ones.
    for (i, n) in names.iter().enumerate() {
        if out[i] == *n {
            taken.insert(out[i].clone());
        }
    }
    let mut shortened: Vec<usize> = (0..names.len()).filter(|&i| out[i] != names[i]).collect();
    shortened.sort_by(|&a, &b| names[a].cmp(names[b]));
    for i in shortened {
        let mut salt = 0;
        while taken.contains(&out[i]) {
            salt += 1;
            out[i] = fit_one(names[i], max, salt);
        }
        taken.insert(out[i].clone());
    }
    out
}

/// FNV-1a: tiny, stable across versions and platforms (unlike std's hasher).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_prefixed_only() {
        assert_eq!(
            exposed_name("github", "create_issue"),
            "github__create_issue"
        );
        assert_eq!(exposed_name("e", "get-sum"), "e__get-sum");
    }

    #[test]
    fn odd_names_are_sanitised_with_a_stable_hash() {
        let a = exposed_name("fs", "read.file/x");
        assert!(is_valid_exposed(&a), "{a}");
        assert!(a.starts_with("fs__read_file_x_"), "{a}");
        assert_eq!(a, exposed_name("fs", "read.file/x"), "deterministic");
        // Two names that sanitise alike still differ.
        assert_ne!(exposed_name("fs", "a.b"), exposed_name("fs", "a/b"));
        let e = exposed_name("s", "");
        assert!(is_valid_exposed(&e), "{e}");
    }

    #[test]
    fn long_names_are_shortened_to_64() {
        let long = "x".repeat(100);
        let a = exposed_name("server", &long);
        assert_eq!(a.len(), MAX_LEN);
        assert!(is_valid_exposed(&a));
        let b = exposed_name("server", &format!("{}y", "x".repeat(99)));
        assert_ne!(a, b);
        let u = exposed_name("s", &"é".repeat(70));
        assert!(is_valid_exposed(&u), "{u}");
    }

    #[test]
    fn plain_names_that_look_hashed_are_hashed() {
        let hashed = exposed_name("fs", "read.file");
        let plain = hashed.strip_prefix("fs__").unwrap();
        assert_ne!(exposed_name("fs", plain), hashed);
        assert!(is_valid_exposed(&exposed_name("fs", plain)));
        assert_eq!(exposed_name("fs", "tool_v1"), "fs__tool_v1");
    }

    /// Tool names of npm `@modelcontextprotocol/server-everything` (the
    /// version in tests/interop, 2026.8.31), and its prompts.
    const EVERYTHING: &[&str] = &[
        "echo",
        "get-annotated-message",
        "get-env",
        "get-resource-links",
        "get-resource-reference",
        "get-structured-content",
        "get-sum",
        "get-tiny-image",
        "gzip-file-as-resource",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "trigger-elicitation-request-async",
        "trigger-sampling-request-async",
        "trigger-url-elicitation",
        "simulate-research-query",
        "get-roots-list",
        "simple-prompt",
        "args-prompt",
        "completable-prompt",
        "resource-prompt",
    ];

    #[test]
    fn every_everything_name_under_a_30_character_server_fits_uniquely() {
        let server = "a-thirty-character-server-name";
        assert_eq!(server.len(), 30);
        let exposed: Vec<String> = EVERYTHING.iter().map(|t| exposed_name(server, t)).collect();
        let exposed: Vec<&str> = exposed.iter().map(String::as_str).collect();
        for max in MIN_BUDGET..=MAX_BUDGET {
            let fit = fit_names(&exposed, max);
            let unique: std::collections::HashSet<&String> = fit.iter().collect();
            assert_eq!(unique.len(), fit.len(), "budget {max}: {fit:?}");
            for (name, f) in exposed.iter().zip(&fit) {
                assert!(f.len() <= max, "budget {max}: {f}");
                assert!(is_valid_exposed(f) || f.len() > MAX_LEN, "{f}");
                assert!(f.bytes().all(valid_byte), "{f}");
                if name.len() <= max {
                    assert_eq!(f, name, "a name that fits is kept");
                }
            }
            // Stable: the same names in another order fit the same way.
            let mut reversed = exposed.clone();
            reversed.reverse();
            let mut again = fit_names(&reversed, max);
            again.reverse();
            assert_eq!(again, fit, "budget {max}");
        }
        // The budget Claude Code leaves behind `mcp__stdioproxy__`.
        let fit = fit_names(&exposed, 64 - "mcp__stdioproxy__".len());
        assert!(fit[0].starts_with(server), "{fit:?}");
    }

    #[test]
    fn fitting_sanitises_and_settles_collisions() {
        let f = fit_names(&["read.file", "café"], 8);
        assert!(
            f.iter().all(|n| n.len() <= 8 && n.bytes().all(valid_byte)),
            "{f:?}"
        );
        // A plain name spelled exactly like another's shortening keeps its
        // spelling; the shortened one moves.
        let long = "x".repeat(20);
        let short = fit_names(&[&long], 12).remove(0);
        let f = fit_names(&[&long, &short], 12);
        assert_eq!(f[1], short);
        assert_ne!(f[0], short);
        assert!(f[0].len() <= 12);
        assert_eq!(fit_names(&[""], 8)[0].len(), 8);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
