//! Property tests: the fuzzing of this project (no nightly toolchain, so no
//! cargo-fuzz). Each property runs a bounded number of cases in `cargo test`.
//!
//! Reproducible by default: every property starts from a committed seed
//! ([`SEED`]), so CI explores the same cases each run, and failures found
//! before are replayed first from `proptest-regressions/` beside these files
//! (proptest writes a failing case's seed there; commit it). To explore new
//! cases, pick a seed and more cases:
//!
//! ```sh
//! PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --test properties
//! ```
//!
//! A failure prints the minimal input and the seed to rerun it with.

// Test code: a poisoned lock means a test already failed.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/support.rs"]
mod support;

mod config;
mod envelope;
mod framing;
mod mrtr;
mod names;
mod resume;
mod routing;

use proptest::test_runner::{Config, RngSeed};

/// The committed seed.
pub const SEED: u64 = 0x5d10_7a0c_2026_1201;

/// A config with `cases` cases (unless `PROPTEST_CASES` says otherwise) and
/// the committed seed (unless `PROPTEST_RNG_SEED` says otherwise).
pub fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c
}
