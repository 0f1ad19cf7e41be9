//! Exposed names: `<server>__<tool>`, always valid for real hosts.
//!
//! Claude, OpenAI and Cursor accept tool names matching
//! `^[A-Za-z0-9_-]{1,64}$`. A name that already fits is exposed unchanged
//! after the prefix. Any other name (odd characters, too long) is sanitised,
//! shortened and given a short hash of its original spelling, so the exposed
//! name is deterministic: it depends only on the server and the tool name,
//! never on which other tools exist or the order servers started in.

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

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
