//! Which era a child speaks, found by asking it.
//!
//! The daemon sends `server/discover` to a throwaway spawn of the child
//! (never to the instance it keeps: some legacy servers exit on an unknown
//! request before `initialize`, rmcp-based ones among them, and others never
//! answer it). A discover result offering a modern revision, or the modern
//! "unsupported version" error naming one, means modern. Any other error,
//! end of output or silence until the timeout means legacy: the fallback
//! never keys on one error code, as the spec asks. Silence is the weakest
//! evidence (a slow start looks the same), so it is reported apart, for the
//! caller not to remember it. Lines that are not the answer (logs on
//! stdout, notifications) are skipped.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

use super::{code, key, MODERN_VERSION, MODERN_VERSIONS};
use crate::framing::{Frame, LineReader};
use crate::jsonrpc::{Envelope, Kind};

/// The probe's request id.
const PROBE_ID: &str = "\"stdioproxy-era-probe\"";

/// What the probe found.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The child serves a modern revision; its discover result (`Null` when
    /// it answered with the modern version error instead).
    Modern(Value),
    /// The child is legacy, and why the daemon thinks so.
    Legacy(String),
    /// No answer in time: legacy for now (some legacy servers never answer
    /// an unknown request), but it may only have been slow to start.
    Silent(String),
}

/// The probe request, one line.
pub fn request() -> String {
    let params = json!({
        "_meta": {
            key::PROTOCOL_VERSION: MODERN_VERSION,
            key::CLIENT_CAPABILITIES: {},
            key::CLIENT_INFO: { "name": "stdioproxy", "version": env!("CARGO_PKG_VERSION") },
        }
    });
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{PROBE_ID},\"method\":\"server/discover\",\"params\":{params}}}\n"
    )
}

/// Probes a child through its stdin and stdout; gives up after `timeout`.
pub async fn probe<W, R>(mut stdin: W, stdout: R, max_line: usize, timeout: Duration) -> Verdict
where
    W: AsyncWrite + Unpin,
    R: AsyncBufRead + Unpin,
{
    if let Err(e) = async {
        stdin.write_all(request().as_bytes()).await?;
        stdin.flush().await
    }
    .await
    {
        return Verdict::Legacy(format!("could not write the probe: {e}"));
    }
    let mut reader = LineReader::new(stdout, max_line);
    let answer = tokio::time::timeout(timeout, async {
        loop {
            match reader.next_frame().await {
                Ok(Frame::Line(line)) => {
                    if let Some(v) = judge(&line) {
                        return v;
                    }
                }
                Ok(Frame::TooLong { .. }) => {}
                Ok(Frame::Eof) => {
                    return Verdict::Legacy("it closed its output on server/discover".into())
                }
                Err(e) => return Verdict::Legacy(format!("reading its answer failed: {e}")),
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| {
        Verdict::Legacy(format!("no answer to server/discover within {timeout:?}"))
    })
}

/// The verdict a line gives, if it is the answer to the probe.
pub fn judge(line: &[u8]) -> Option<Verdict> {
    let env = Envelope::parse(line).ok()?;
    if env.kind() != Kind::Response || env.id.map(|i| i.get()) != Some(PROBE_ID) {
        return None;
    }
    let offers_modern = |versions: Option<&Value>| {
        versions.and_then(Value::as_array).is_some_and(|vs| {
            vs.iter()
                .any(|v| v.as_str().is_some_and(|v| MODERN_VERSIONS.contains(&v)))
        })
    };
    if let Some(result) = env.result {
        let result: Value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
        return Some(if offers_modern(result.get("supportedVersions")) {
            Verdict::Modern(result)
        } else {
            Verdict::Legacy("its discover result offers no revision stdioproxy speaks".into())
        });
    }
    let error: Value = env
        .error
        .and_then(|e| serde_json::from_str(e.get()).ok())
        .unwrap_or(Value::Null);
    let code = error.get("code").and_then(Value::as_i64);
    if code == Some(code::UNSUPPORTED_VERSION) && offers_modern(error.pointer("/data/supported")) {
        return Some(Verdict::Modern(Value::Null));
    }
    Some(Verdict::Legacy(format!(
        "it answered server/discover with error {}",
        code.map_or_else(|| "?".to_string(), |c| c.to_string())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// Runs the probe against a scripted peer: `answer` gets the probe line
    /// and returns what the peer writes back (None: close at once).
    async fn against(
        answer: impl FnOnce(String) -> Option<String> + Send + 'static,
        timeout: Duration,
    ) -> Verdict {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (our_read, our_write) = tokio::io::split(ours);
        let (their_read, mut their_write) = tokio::io::split(theirs);
        let peer = tokio::spawn(async move {
            let mut line = String::new();
            let mut r = BufReader::new(their_read);
            r.read_line(&mut line).await.unwrap();
            match answer(line) {
                Some(out) => {
                    their_write.write_all(out.as_bytes()).await.unwrap();
                    // Stay silent (and open) afterwards.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                None => drop(their_write),
            }
        });
        let v = probe(our_write, BufReader::new(our_read), 1 << 20, timeout).await;
        peer.abort();
        v
    }

    #[test]
    fn the_probe_is_a_modern_request() {
        let line = request();
        let m =
            crate::era::meta::parse(Envelope::parse(line.trim_end().as_bytes()).unwrap().params);
        assert!(m.is_ok(), "{m:?}");
    }

    #[tokio::test]
    async fn a_discover_result_means_modern() {
        let v = against(|_| Some(format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\nnot json\n{{\"result\":{{\"supportedVersions\":[\"2026-07-28\"],\"capabilities\":{{\"tools\":{{}}}}}},\"jsonrpc\":\"2.0\",\"id\":{PROBE_ID}}}\n"
        )), Duration::from_secs(5)).await;
        match v {
            Verdict::Modern(d) => assert_eq!(d["capabilities"]["tools"], json!({})),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn legacy_answers_exits_and_silence_mean_legacy() {
        let v = against(|_| Some(format!("{{\"jsonrpc\":\"2.0\",\"id\":{PROBE_ID},\"error\":{{\"code\":-32601,\"message\":\"Method not found\"}}}}\n")), Duration::from_secs(5)).await;
        assert!(
            matches!(v, Verdict::Legacy(ref w) if w.contains("-32601")),
            "{v:?}"
        );
        let v = against(|_| None, Duration::from_secs(5)).await;
        assert!(
            matches!(v, Verdict::Legacy(ref w) if w.contains("closed")),
            "{v:?}"
        );
        let v = against(|_| Some(String::new()), Duration::from_millis(200)).await;
        assert!(
            matches!(v, Verdict::Legacy(ref w) if w.contains("no answer")),
            "{v:?}"
        );
        // A -32022 naming a modern revision is modern evidence; naming only
        // legacy ones is not.
        let v = against(|_| Some(format!("{{\"jsonrpc\":\"2.0\",\"id\":{PROBE_ID},\"error\":{{\"code\":-32022,\"message\":\"x\",\"data\":{{\"supported\":[\"2026-07-28\"]}}}}}}\n")), Duration::from_secs(5)).await;
        assert_eq!(v, Verdict::Modern(Value::Null));
        let v = against(|_| Some(format!("{{\"jsonrpc\":\"2.0\",\"id\":{PROBE_ID},\"error\":{{\"code\":-32022,\"message\":\"x\",\"data\":{{\"supported\":[\"2025-11-25\"]}}}}}}\n")), Duration::from_secs(5)).await;
        assert!(matches!(v, Verdict::Legacy(_)));
        // Another request's answer is not the verdict.
        assert_eq!(
            judge(br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"]}}"#),
            None
        );
    }
}
