//! The shim's client-fitting options (issue 16): `--server NAME`,
//! `--name-max N`, `--tools search`. Parsing and checking live here, apart
//! from the rest of the shim's command line (`shim::options` routes these
//! flags to [`Fit::set`] and calls [`Fit::check`]); the daemon checks the
//! same ranges again when it reads the hello. Std-only: the shim links it.

/// Smallest `--name-max`: one character, `_` and a 6-digit hash.
pub const NAME_MAX_MIN: usize = 8;
/// Largest `--name-max`.
pub const NAME_MAX_MAX: usize = 128;

/// The flags of this module (each takes a value).
pub const FLAGS: &[&str] = &["--server", "--name-max", "--tools"];

/// What a shim asks of its session besides `servers`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fit {
    /// `--server NAME`.
    pub server: Option<String>,
    /// `--name-max N`.
    pub name_max: Option<usize>,
    /// `--tools MODE` (only `search`).
    pub tools: Option<String>,
}

impl Fit {
    /// Sets one of [`FLAGS`] from its value; an error is one sentence.
    pub fn set(&mut self, flag: &str, value: String) -> Result<(), String> {
        match flag {
            "--server" if value.trim().is_empty() => Err("--server needs a server name".into()),
            "--server" => {
                self.server = Some(value);
                Ok(())
            }
            "--name-max" => match value.parse::<usize>() {
                Ok(n) if (NAME_MAX_MIN..=NAME_MAX_MAX).contains(&n) => {
                    self.name_max = Some(n);
                    Ok(())
                }
                _ => Err(format!(
                    "--name-max must be a number from {NAME_MAX_MIN} to {NAME_MAX_MAX}, not {value:?}"
                )),
            },
            "--tools" if value == "search" => {
                self.tools = Some(value);
                Ok(())
            }
            "--tools" => Err(format!("--tools takes \"search\", not {value:?}")),
            other => Err(format!("unknown argument {other:?}")),
        }
    }

    /// Checks the options together with `--servers`.
    pub fn check(&self, servers: &[String]) -> Result<(), String> {
        if self.server.is_some() && !servers.is_empty() {
            return Err("--server and --servers cannot be combined".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked() {
        let mut f = Fit::default();
        f.set("--server", "github".into()).unwrap();
        f.set("--name-max", "47".into()).unwrap();
        f.set("--tools", "search".into()).unwrap();
        assert_eq!(f.server.as_deref(), Some("github"));
        assert_eq!(f.name_max, Some(47));
        for bad in ["7", "129", "x", "-1", ""] {
            assert!(f.set("--name-max", bad.into()).is_err(), "{bad}");
        }
        assert!(f.set("--tools", "all".into()).is_err());
        assert!(f.set("--server", " ".into()).is_err());
        assert!(f.check(&[]).is_ok());
        assert!(f.check(&["a".into()]).is_err());
        assert!(Fit::default().check(&["a".into()]).is_ok());
    }
}
