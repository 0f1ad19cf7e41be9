//! The `requestState` the daemon mints when it bridges a legacy child's
//! request (sampling, elicitation, roots) to a modern client as an
//! `input_required` result.
//!
//! The state comes back from the client on the retry, so it is
//! attacker-controlled input: it is an HMAC-SHA256 over what it claims
//! (the session it was minted for, the held request it names, the call it
//! belongs to, when it expires), keyed with 32 random bytes drawn once per
//! daemon. A state that fails the MAC is forged; one past its expiry is
//! expired; one minted for another session or another call is foreign. All
//! three are refused (and logged by the caller). A daemon restart changes
//! the key, which is right: the held requests died with the old daemon.
//!
//! Format (opaque to clients): `sp1.<session>.<held>.<call>.<expiry ms>.<mac hex>`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sp1";

/// The per-daemon key.
pub struct StateKey {
    key: [u8; 32],
}

/// What a verified state names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The session it was minted for.
    pub session: u64,
    /// The held request it answers.
    pub held: u64,
    /// Fingerprint of the call it belongs to ([`call_fingerprint`]).
    pub call: u64,
    /// When it expires (unix milliseconds).
    pub expires_ms: u64,
}

/// Why a state was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not one the daemon minted (bad shape or MAC).
    #[error(
        "requestState was not issued by this daemon (forged, altered, or from before a restart)"
    )]
    Forged,
    /// Past its expiry.
    #[error("requestState expired; call again without it")]
    Expired,
    /// Minted for another session or another call.
    #[error("requestState belongs to another session or another call")]
    Foreign,
}

impl StateKey {
    /// A fresh random key (from the kernel's CSPRNG).
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Self { key })
    }

    /// The daemon's key: drawn once, at first use. Without a working
    /// `/dev/urandom` the daemon cannot mint states anyone could not forge,
    /// so it falls back to a key from the clock and pid only with a loud
    /// error (MRTR retries then still work, but their states are weak).
    pub fn daemon() -> std::sync::Arc<StateKey> {
        static KEY: std::sync::OnceLock<std::sync::Arc<StateKey>> = std::sync::OnceLock::new();
        KEY.get_or_init(|| {
            std::sync::Arc::new(StateKey::random().unwrap_or_else(|e| {
                tracing::error!(
                    "cannot read /dev/urandom for the MRTR state key ({e}); using a weak key"
                );
                let seed = format!("{}-{}", now_ms(), std::process::id());
                let mut key = [0u8; 32];
                let digest = <Sha256 as sha2::Digest>::digest(seed.as_bytes());
                key.copy_from_slice(&digest);
                StateKey { key }
            }))
        })
        .clone()
    }

    /// A fixed key (tests).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, body: &str) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_key());
        mac.update(body.as_bytes());
        mac
    }

    /// Mints the state for `claim`.
    pub fn mint(&self, claim: Claim) -> String {
        let body = format!(
            "{PREFIX}.{}.{}.{:x}.{}",
            claim.session, claim.held, claim.call, claim.expires_ms
        );
        let tag = self.mac(&body).finalize().into_bytes();
        let mut out = body;
        out.push('.');
        for b in tag {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Checks a state a client sent back on session `session` for the call
    /// `call`, at `now_ms`; returns what it names.
    pub fn verify(
        &self,
        state: &str,
        session: u64,
        call: u64,
        now_ms: u64,
    ) -> Result<Claim, StateError> {
        let (body, tag_hex) = state.rsplit_once('.').ok_or(StateError::Forged)?;
        let tag = decode_hex(tag_hex).ok_or(StateError::Forged)?;
        self.mac(body)
            .verify_slice(&tag)
            .map_err(|_| StateError::Forged)?;
        let mut parts = body.split('.');
        let claim = (|| {
            if parts.next()? != PREFIX {
                return None;
            }
            let session = parts.next()?.parse().ok()?;
            let held = parts.next()?.parse().ok()?;
            let call = u64::from_str_radix(parts.next()?, 16).ok()?;
            let expires_ms = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some(Claim {
                session,
                held,
                call,
                expires_ms,
            })
        })()
        .ok_or(StateError::Forged)?;
        if claim.session != session || claim.call != call {
            return Err(StateError::Foreign);
        }
        if now_ms >= claim.expires_ms {
            return Err(StateError::Expired);
        }
        Ok(claim)
    }
}

#[cold]
fn unreachable_key() -> HmacSha256 {
    // `Hmac::new_from_slice` accepts every key length; keep clippy's
    // no-unwrap rule without a panic path in practice.
    HmacSha256::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| std::process::abort())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What ties a state to its call: the method and the exposed name (or URI)
/// of the request it was minted for, so a state cannot be replayed on
/// another tool.
pub fn call_fingerprint(method: &str, target: &str) -> u64 {
    let mut text = String::with_capacity(method.len() + target.len() + 1);
    text.push_str(method);
    text.push('\0');
    text.push_str(target);
    crate::names::fnv1a64(text.as_bytes())
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey::from_bytes([7; 32])
    }

    fn claim() -> Claim {
        Claim {
            session: 3,
            held: 42,
            call: call_fingerprint("tools/call", "a__sample"),
            expires_ms: 10_000,
        }
    }

    #[test]
    fn a_minted_state_verifies_until_it_expires() {
        let k = key();
        let c = claim();
        let s = k.mint(c);
        assert!(s.starts_with("sp1.3.42."), "{s}");
        assert_eq!(k.verify(&s, 3, c.call, 9_999), Ok(c));
        assert_eq!(k.verify(&s, 3, c.call, 10_000), Err(StateError::Expired));
    }

    #[test]
    fn foreign_and_forged_states_are_refused() {
        let k = key();
        let c = claim();
        let s = k.mint(c);
        assert_eq!(k.verify(&s, 4, c.call, 0), Err(StateError::Foreign));
        let other = call_fingerprint("tools/call", "a__other");
        assert_eq!(k.verify(&s, 3, other, 0), Err(StateError::Foreign));
        // Claiming another held request breaks the MAC.
        let altered = s.replacen("sp1.3.42.", "sp1.3.43.", 1);
        assert_eq!(k.verify(&altered, 3, c.call, 0), Err(StateError::Forged));
        // Extending the expiry too.
        let later = s.replace(".10000.", ".99999.");
        assert_eq!(k.verify(&later, 3, c.call, 0), Err(StateError::Forged));
        // Another daemon's key.
        let other_key = StateKey::from_bytes([8; 32]);
        assert_eq!(other_key.verify(&s, 3, c.call, 0), Err(StateError::Forged));
        for junk in [
            "",
            ".",
            "sp1",
            "sp1.3.42.x.1.zz",
            "abc.def",
            "sp1.3.42.1.1.0",
        ] {
            assert_eq!(
                k.verify(junk, 3, c.call, 0),
                Err(StateError::Forged),
                "{junk}"
            );
        }
    }

    #[test]
    fn random_keys_differ() {
        let a = StateKey::random().unwrap();
        let b = StateKey::random().unwrap();
        assert_ne!(a.mint(claim()), b.mint(claim()));
    }
}
