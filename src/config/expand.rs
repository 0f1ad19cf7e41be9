//! `${VAR}` expansion of configured env values from the daemon's environment.
//!
//! Expansion happens when a child is spawned, not when the config is parsed,
//! so the parsed config (and anything derived from it, such as `status`) never
//! holds secret values. `$${` is a literal `${`.

use std::collections::BTreeMap;

/// Expands every `${NAME}` in `value` with `lookup(NAME)`. Fails naming the
/// first variable that is not set (never the value of anything).
pub fn expand_vars(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${...} (missing '}')".to_string())?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("${{{name}}} is not a valid variable name"));
            }
            let v = lookup(name)
                .ok_or_else(|| format!("${{{name}}} is not set in the daemon's environment"))?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every value of a configured `env` table from the process
/// environment. The error names the key and the variable, never a value.
pub fn expand_env_table(env: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    expand_env_table_with(env, &[])
}

/// Like [`expand_env_table`], with `extra` variables (the instance's own,
/// such as `STDIOPROXY_INSTANCE`) looked up before the daemon's.
pub fn expand_env_table_with(
    env: &BTreeMap<String, String>,
    extra: &[(&str, String)],
) -> Result<Vec<(String, String)>, String> {
    let lookup = |name: &str| {
        extra
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    env.iter()
        .map(|(k, v)| {
            expand_vars(v, lookup)
                .map(|x| (k.clone(), x))
                .map_err(|e| format!("env {k}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(n: &str) -> Option<String> {
        match n {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands() {
        assert_eq!(expand_vars("${TOKEN}", lookup).unwrap(), "s3cret");
        assert_eq!(
            expand_vars("a-${TOKEN}-b${EMPTY}", lookup).unwrap(),
            "a-s3cret-b"
        );
        assert_eq!(expand_vars("cost $5", lookup).unwrap(), "cost $5");
        assert_eq!(expand_vars("$${TOKEN}", lookup).unwrap(), "${TOKEN}");
    }

    #[test]
    fn instance_variables_come_first() {
        let env = BTreeMap::from([(
            "F".to_string(),
            "/m/${STDIOPROXY_INSTANCE}.json".to_string(),
        )]);
        let got =
            expand_env_table_with(&env, &[("STDIOPROXY_INSTANCE", "session-3".into())]).unwrap();
        assert_eq!(
            got,
            vec![("F".to_string(), "/m/session-3.json".to_string())]
        );
    }

    #[test]
    fn errors_name_the_variable_not_values() {
        let e = expand_vars("${MISSING}", lookup).unwrap_err();
        assert!(e.contains("MISSING") && e.contains("not set"));
        assert!(expand_vars("${TOKEN", lookup)
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_vars("${A B}", lookup).is_err());
    }
}
