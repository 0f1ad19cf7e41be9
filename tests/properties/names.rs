//! `names::exposed_name` always yields a name real hosts accept
//! (`^[A-Za-z0-9_-]{1,64}$`), deterministically, prefixed by its server, and
//! distinct tool names of one server get distinct exposed names.

use proptest::prelude::*;
use stdioproxy::config::ServerName;
use stdioproxy::names::{exposed_name, is_valid_exposed};

/// Valid server names (as the config accepts them).
fn server() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9-]{0,10}(_[A-Za-z0-9-]{1,8}){0,2}"
        .prop_filter("a valid server name", |s| ServerName::new(s).is_ok())
}

/// Tool names as children send them: mostly plain, sometimes odd or long.
fn tool() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{1,20}",
        2 => "[A-Za-z0-9_./:@ -]{0,80}",
        1 => ".{0,90}",
        1 => "[a-z]{50,70}",
    ]
}

proptest! {
    #![proptest_config(crate::config(4096))]

    #[test]
    fn exposed_names_are_valid_deterministic_and_prefixed(s in server(), t in tool()) {
        let e = exposed_name(&s, &t);
        prop_assert!(is_valid_exposed(&e), "{:?} from {:?}/{:?}", e, s, t);
        prop_assert_eq!(&e, &exposed_name(&s, &t));
        let prefix = format!("{s}__");
        prop_assert!(e.starts_with(&prefix), "{:?}", e);
        // A name that already fits is exposed unchanged.
        if !t.is_empty() && is_valid_exposed(&format!("{s}__{t}")) {
            prop_assert_eq!(e, format!("{s}__{t}"));
        }
    }

    #[test]
    fn distinct_tools_of_one_server_get_distinct_names(s in server(), a in tool(), b in tool()) {
        prop_assume!(a != b);
        prop_assert_ne!(exposed_name(&s, &a), exposed_name(&s, &b), "{:?} vs {:?}", a, b);
    }
}

/// A tool literally named like another tool's hashed name takes that name:
/// the catalog then keeps the first and hides the other (with a warning).
/// Random names never hit this; a crafted pair does.
#[test]
fn a_plain_name_never_equals_another_tools_hashed_name() {
    let hashed = exposed_name("fs", "read.file");
    let plain = hashed.strip_prefix("fs__").expect("prefixed").to_string();
    assert_ne!(plain, "read.file");
    assert_ne!(exposed_name("fs", &plain), hashed);
}

/// Across servers, `a_` + `b` and `a` + `_b` meet at `a___b`.
#[test]
fn names_of_two_servers_never_meet() {
    if ServerName::new("a_").is_ok() {
        assert_ne!(exposed_name("a_", "b"), exposed_name("a", "_b"));
    }
}
