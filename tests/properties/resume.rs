//! The shim's session memory ([`stdioproxy::shim::resume`]) under random
//! interleavings of client messages, daemon answers, daemon requests,
//! disconnects, reconnects, queue flushes and refusals.
//!
//! The world is modelled: a client that numbers its requests with string
//! and number ids (and may cancel them), and one model daemon per
//! connection that answers what it received in any order, asks the client
//! things (numbering its requests from 1 again on each connection, so ids
//! clash across a restart) and dies with its connection. Checked on every
//! step and once everything has settled:
//!
//! - every client request gets exactly one response (at most one when the
//!   client cancelled it), and nothing else reaches the client as a
//!   response: no unknown id, no second answer, none of the shim's own;
//! - every line a daemon gets is whole JSON; a daemon gets an answer only
//!   to a request it asked on its own connection, and the right one;
//! - a resumed connection starts with `initialize`.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::{json, Value};
use stdioproxy::shim::resume::{FromClient, Phase, Reconnect, Resume};

#[derive(Debug, Clone)]
enum Op {
    /// A client request; `true` for a string id.
    Request(bool),
    /// Two client requests in one read.
    TwoRequests,
    SetLevel,
    Subscribe(u8),
    Notify,
    /// The client cancels one of its requests.
    Cancel(usize),
    /// The client answers one of the daemon's requests it holds.
    Answer(usize),
    /// The daemon answers one of the requests it holds.
    DaemonAnswer(usize),
    /// The daemon asks the client something.
    DaemonAsk,
    /// The daemon refuses the replayed initialize, if one is pending.
    Refuse,
    Disconnect,
    Reconnect,
    /// One batch of the queue.
    Flush,
    /// A client request whose write fails because the connection just
    /// died; `true` when the shim notices the loss before the failed write.
    FailedSend(bool),
    /// A batch of the queue whose write fails (the connection just died).
    FailedFlush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(Op::Request),
        1 => Just(Op::TwoRequests),
        1 => Just(Op::SetLevel),
        1 => (0u8..3).prop_map(Op::Subscribe),
        1 => Just(Op::Notify),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => any::<usize>().prop_map(Op::Answer),
        6 => any::<usize>().prop_map(Op::DaemonAnswer),
        2 => Just(Op::DaemonAsk),
        1 => Just(Op::Refuse),
        2 => Just(Op::Disconnect),
        2 => Just(Op::Reconnect),
        3 => Just(Op::Flush),
        1 => any::<bool>().prop_map(Op::FailedSend),
        1 => Just(Op::FailedFlush),
    ]
}

/// One connection's daemon.
#[derive(Default)]
struct Daemon {
    /// Requests received and not answered: (raw id, method).
    pending: Vec<(String, String)>,
    /// What it asked the client: raw id -> token.
    asked: HashMap<String, u64>,
    next_ask: u64,
    lines: usize,
    resumed: bool,
}

struct World {
    shim: Resume,
    daemon: Option<Daemon>,
    next_id: u64,
    /// Client request ids (raw) -> answers seen.
    answers: HashMap<String, usize>,
    cancelled: HashSet<String>,
    /// The daemon's requests the client holds: (raw id, token).
    held: Vec<(String, u64)>,
    next_token: u64,
    flushing: bool,
    over: bool,
}

impl World {
    fn new() -> World {
        let mut w = World {
            shim: Resume::new(),
            daemon: Some(Daemon::default()),
            next_id: 0,
            answers: HashMap::new(),
            cancelled: HashSet::new(),
            held: Vec::new(),
            next_token: 0,
            flushing: false,
            over: false,
        };
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"prop","version":"1"}}});
        w.answers.insert("0".into(), 0);
        w.client_send(&format!("{init}\n"));
        w.answer_all();
        w.client_send("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        w
    }

    fn fresh_id(&mut self, string: bool) -> String {
        self.next_id += 1;
        let id = if string {
            format!("\"r{}\"", self.next_id)
        } else {
            self.next_id.to_string()
        };
        self.answers.insert(id.clone(), 0);
        id
    }

    fn client_send(&mut self, chunk: &str) {
        match self.shim.from_client(chunk.as_bytes()) {
            FromClient::Send(pass) => {
                let bytes = pass.bytes(chunk.as_bytes()).to_vec();
                self.deliver_to_daemon(&bytes);
            }
            FromClient::Queued { .. } => {}
            FromClient::Overflow(errors) => {
                self.deliver_to_client(&errors);
                self.over = true;
            }
        }
    }

    fn deliver_to_daemon(&mut self, bytes: &[u8]) {
        let d = self
            .daemon
            .as_mut()
            .expect("the shim sent bytes while it had no connection");
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\n"), "a partial line reached the daemon");
            let v: Value = serde_json::from_slice(line).expect("the daemon got a broken line");
            let first = d.lines == 0;
            d.lines += 1;
            let method = v.get("method").and_then(Value::as_str).map(str::to_string);
            if first && d.resumed {
                assert_eq!(
                    method.as_deref(),
                    Some("initialize"),
                    "a resumed connection must start with initialize: {v}"
                );
            }
            match (v.get("id"), method) {
                (Some(id), Some(m)) => d.pending.push((id.to_string(), m)),
                (None, Some(m)) if m == "notifications/cancelled" => {
                    let rid = v["params"]["requestId"].to_string();
                    d.pending.retain(|(id, _)| *id != rid);
                }
                (Some(id), None) => {
                    let token = d.asked.remove(&id.to_string()).unwrap_or_else(|| {
                        panic!("the daemon got an answer to {id}, which it never asked (or twice)")
                    });
                    assert_eq!(
                        v["result"]["token"], token,
                        "an answer went to the wrong request"
                    );
                }
                _ => {}
            }
        }
    }

    fn deliver_to_client(&mut self, bytes: &[u8]) {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let v: Value = serde_json::from_slice(line).expect("the client got a broken line");
            match (v.get("id"), v.get("method")) {
                (Some(id), None) => {
                    let key = id.to_string();
                    assert!(
                        !key.contains("stdioproxy-shim"),
                        "the shim's own response leaked: {v}"
                    );
                    let n = self
                        .answers
                        .get_mut(&key)
                        .unwrap_or_else(|| panic!("a response the client never asked for: {v}"));
                    *n += 1;
                    assert_eq!(*n, 1, "a second response to {key}: {v}");
                }
                (Some(id), Some(_)) => self
                    .held
                    .push((id.to_string(), v["params"]["token"].as_u64().unwrap())),
                _ => {}
            }
        }
    }

    fn daemon_says(&mut self, line: String) {
        let out = self.shim.from_daemon(line.as_bytes());
        if let Some(pass) = &out.to_client {
            let bytes = pass.bytes(line.as_bytes()).to_vec();
            self.deliver_to_client(&bytes);
        }
        if out.fatal.is_some() {
            self.over = true;
        }
        if out.flush {
            self.flushing = true;
        }
    }

    fn daemon_answer(&mut self, i: usize, refuse: bool) {
        let Some(d) = self.daemon.as_mut() else {
            return;
        };
        if d.pending.is_empty() {
            return;
        }
        let (id, method) = if refuse {
            match d
                .pending
                .iter()
                .position(|(id, m)| m == "initialize" && id.contains("stdioproxy-shim"))
            {
                Some(p) => d.pending.remove(p),
                None => return,
            }
        } else {
            d.pending.remove(i % d.pending.len())
        };
        let line = if refuse {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":-32600,\"message\":\"no\"}}}}\n")
        } else if method == "initialize" {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{{\"tools\":{{\"listChanged\":true}},\"resources\":{{\"listChanged\":true,\"subscribe\":true}}}}}}}}\n")
        } else {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}}}}\n")
        };
        self.daemon_says(line);
    }

    fn answer_all(&mut self) {
        while self.daemon.as_ref().is_some_and(|d| !d.pending.is_empty()) && !self.over {
            self.daemon_answer(0, false);
        }
    }

    fn flush_one(&mut self) {
        if !self.flushing {
            return;
        }
        let conn = self.shim.connection();
        match self.shim.take_batch(conn) {
            Some(bytes) => self.deliver_to_daemon(&bytes),
            None => self.flushing = false,
        }
    }

    fn reconnect(&mut self) {
        if self.shim.phase() != Phase::Down || self.over {
            return;
        }
        self.daemon = Some(Daemon {
            resumed: true,
            ..Daemon::default()
        });
        let Reconnect { replay, flush } = self.shim.reconnected();
        self.deliver_to_daemon(&replay);
        self.flushing = flush;
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Request(string) => {
                let id = self.fresh_id(string);
                self.client_send(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"x\"}}}}\n"));
            }
            Op::TwoRequests => {
                let a = self.fresh_id(true);
                let b = self.fresh_id(false);
                self.client_send(&format!(
                    "{{\"id\":{a},\"method\":\"ping\"}}\n{{\"id\":{b},\"method\":\"ping\"}}\n"
                ));
            }
            Op::SetLevel => {
                let id = self.fresh_id(false);
                self.client_send(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"logging/setLevel\",\"params\":{{\"level\":\"info\"}}}}\n"));
            }
            Op::Subscribe(n) => {
                let id = self.fresh_id(true);
                let method = if n == 2 { "unsubscribe" } else { "subscribe" };
                self.client_send(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"resources/{method}\",\"params\":{{\"uri\":\"u://{}\"}}}}\n", n % 2));
            }
            Op::Notify => self.client_send(
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}\n",
            ),
            Op::Cancel(i) => {
                let ids: Vec<String> = self.answers.keys().filter(|k| *k != "0").cloned().collect();
                if ids.is_empty() {
                    return;
                }
                let mut ids = ids;
                ids.sort();
                let id = ids[i % ids.len()].clone();
                self.cancelled.insert(id.clone());
                self.client_send(&format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id}}}}}\n"));
            }
            Op::Answer(i) => {
                if self.held.is_empty() {
                    return;
                }
                let (id, token) = self.held.remove(i % self.held.len());
                self.client_send(&format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"token\":{token}}}}}\n"
                ));
            }
            Op::DaemonAnswer(i) => self.daemon_answer(i, false),
            Op::Refuse => self.daemon_answer(0, true),
            Op::DaemonAsk => {
                if self.shim.phase() == Phase::Down {
                    return;
                }
                self.next_token += 1;
                let token = self.next_token;
                let Some(d) = self.daemon.as_mut() else {
                    return;
                };
                d.next_ask += 1;
                let id = d.next_ask.to_string();
                d.asked.insert(id.clone(), token);
                self.daemon_says(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"sampling/createMessage\",\"params\":{{\"token\":{token}}}}}\n"));
            }
            Op::Disconnect => {
                if self.shim.phase() == Phase::Down {
                    return;
                }
                self.daemon = None;
                self.flushing = false;
                let errors = self.shim.lost();
                self.deliver_to_client(&errors);
            }
            Op::Reconnect => self.reconnect(),
            Op::Flush => self.flush_one(),
            Op::FailedSend(lost_first) => {
                let id = self.fresh_id(false);
                let line =
                    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\"}}\n");
                match self.shim.from_client(line.as_bytes()) {
                    FromClient::Send(pass) => {
                        let bytes = pass.bytes(line.as_bytes()).to_vec();
                        if lost_first {
                            self.step(Op::Disconnect);
                            self.shim.undelivered(&bytes, false);
                        } else {
                            self.shim.undelivered(&bytes, false);
                            self.step(Op::Disconnect);
                        }
                    }
                    FromClient::Queued { .. } => {}
                    FromClient::Overflow(errors) => {
                        self.deliver_to_client(&errors);
                        self.over = true;
                    }
                }
            }
            Op::FailedFlush => {
                if !self.flushing {
                    return;
                }
                let conn = self.shim.connection();
                match self.shim.take_batch(conn) {
                    Some(bytes) => {
                        self.shim.undelivered(&bytes, true);
                        self.step(Op::Disconnect);
                    }
                    None => self.flushing = false,
                }
            }
        }
    }

    /// Everything settles: reconnect, flush, answer until nothing is left.
    fn settle(&mut self) {
        for _ in 0..100 {
            if self.over {
                return;
            }
            self.reconnect();
            while self.flushing && !self.over {
                self.flush_one();
            }
            self.answer_all();
            let idle = self.daemon.as_ref().is_some_and(|d| d.pending.is_empty());
            if idle && !self.flushing && self.shim.phase() == Phase::Live && !self.shim.has_queued()
            {
                return;
            }
        }
        panic!("the shim never settled: phase {:?}", self.shim.phase());
    }

    fn check_exactly_once(&self) {
        for (id, n) in &self.answers {
            if self.cancelled.contains(id) {
                assert!(*n <= 1, "{id} answered {n} times");
            } else {
                assert_eq!(*n, 1, "request {id} got {n} responses");
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn every_request_gets_exactly_one_response(ops in prop::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in ops {
            w.step(op);
            if w.over {
                break;
            }
        }
        w.settle();
        w.check_exactly_once();
        prop_assert_eq!(w.shim.in_flight(), 0);
    }
}

#[test]
fn a_full_queue_fails_every_queued_request() {
    let mut w = World::new();
    w.step(Op::Disconnect);
    for _ in 0..=stdioproxy::shim::resume::QUEUE_MAX_MESSAGES {
        w.step(Op::Request(false));
    }
    assert!(w.over, "the queue had no bound");
    w.check_exactly_once();
}

/// A session whose first connection is lost after `initialize` (answered
/// with `version`) and a queued call `"q"`; returns the replayed
/// initialize's id.
fn lost_after_initialize(shim: &mut Resume, version: &str) -> String {
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}
"#;
    assert!(matches!(shim.from_client(init), FromClient::Send(_)));
    let answer = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"protocolVersion\":\"{version}\",\"capabilities\":{{}}}}}}\n");
    shim.from_daemon(answer.as_bytes());
    let initialized = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
    assert!(matches!(shim.from_client(initialized), FromClient::Send(_)));
    assert!(shim.lost().is_empty());
    let call = b"{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"method\":\"tools/call\"}\n";
    assert_eq!(shim.from_client(call), FromClient::Queued { first: true });
    let Reconnect { replay, flush } = shim.reconnected();
    assert!(!flush);
    let v: Value = serde_json::from_slice(&replay).unwrap();
    assert_eq!(v["method"], "initialize");
    assert_eq!(
        v["params"]["clientInfo"]["name"], "c",
        "params replayed verbatim"
    );
    v["id"].to_string()
}

fn errors_for(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .collect()
}

#[test]
fn a_refused_replay_fails_what_is_pending_and_says_why() {
    let mut shim = Resume::new();
    let id = lost_after_initialize(&mut shim, "2025-06-18");
    let refusal = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":-32600,\"message\":\"go away\"}}}}\n");
    let out = shim.from_daemon(refusal.as_bytes());
    let why = out.fatal.expect("a refusal is fatal");
    assert!(
        why.contains("refused to resume") && why.contains("go away"),
        "{why}"
    );
    let sent = out.to_client.expect("bytes for the client");
    let errors = errors_for(sent.bytes(refusal.as_bytes()));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["id"], "q");
    assert_eq!(errors[0]["error"]["code"], -32603);
}

#[test]
fn a_replay_on_another_protocol_version_is_refused() {
    let mut shim = Resume::new();
    let id = lost_after_initialize(&mut shim, "2025-06-18");
    let answer = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"protocolVersion\":\"2024-11-05\",\"capabilities\":{{}}}}}}\n");
    let out = shim.from_daemon(answer.as_bytes());
    let why = out.fatal.expect("a version change is fatal");
    assert!(
        why.contains("2024-11-05") && why.contains("2025-06-18"),
        "{why}"
    );
}

#[test]
fn an_accepted_replay_announces_what_may_have_changed() {
    let mut shim = Resume::new();
    let id = lost_after_initialize(&mut shim, "2025-06-18");
    let answer = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{{\"tools\":{{\"listChanged\":true}},\"prompts\":{{\"listChanged\":true}},\"resources\":{{}}}}}}}}\n");
    let out = shim.from_daemon(answer.as_bytes());
    assert!(out.fatal.is_none() && out.flush);
    let to_client = out.to_client.expect("bytes for the client");
    let methods: Vec<Value> = errors_for(to_client.bytes(answer.as_bytes()))
        .iter()
        .map(|v| v["method"].clone())
        .collect();
    assert_eq!(
        methods,
        vec![
            json!("notifications/tools/list_changed"),
            json!("notifications/prompts/list_changed")
        ]
    );
    // The queued call goes out after the replay's notifications/initialized.
    let conn = shim.connection();
    let mut sent = Vec::new();
    while let Some(b) = shim.take_batch(conn) {
        sent.extend(b);
    }
    let sent = errors_for(&sent);
    assert_eq!(sent[0]["method"], "notifications/initialized");
    assert_eq!(sent[1]["id"], "q");
    assert_eq!(shim.phase(), Phase::Live);
}
