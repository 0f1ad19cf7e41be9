//! Client-side routing through a real daemon with a fixture child: random
//! sequences of valid and invalid lines, written in random pieces. The daemon
//! stays up, every request whose id can be read gets exactly one response
//! with that id (and every unreadable line exactly one error with id null),
//! and nothing answers notifications or stray responses.
//!
//! And, black-box, the id and progress-token remapping: two clients using the
//! same ids and the same progress tokens, in random interleavings, each get
//! only their own responses and their own progress.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use crate::support::*;

const MAX: usize = 4096;

#[derive(Debug, Clone)]
enum Line {
    Ping,
    ToolsList,
    Echo(String),
    Sleep(u64),
    UnknownTool,
    UnknownMethod,
    CallWithoutName,
    Initialize,
    NoMethod,
    OversizedIdFirst,
    OversizedIdLast,
    Garbage(Vec<u8>),
    NotObject(u8),
    Batch,
    BadMethodType,
    Notification(u8),
    ClientResponse,
    Blank,
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        3 => Just(Line::Ping),
        1 => Just(Line::ToolsList),
        4 => "[a-z é\"\\\\]{0,12}".prop_map(Line::Echo),
        1 => (0u64..40).prop_map(Line::Sleep),
        1 => Just(Line::UnknownTool),
        1 => Just(Line::UnknownMethod),
        1 => Just(Line::CallWithoutName),
        1 => Just(Line::Initialize),
        1 => Just(Line::NoMethod),
        1 => Just(Line::OversizedIdFirst),
        1 => Just(Line::OversizedIdLast),
        2 => prop::collection::vec(any::<u8>(), 0..30).prop_map(Line::Garbage),
        1 => any::<u8>().prop_map(Line::NotObject),
        1 => Just(Line::Batch),
        1 => Just(Line::BadMethodType),
        2 => any::<u8>().prop_map(Line::Notification),
        1 => Just(Line::ClientResponse),
        1 => Just(Line::Blank),
    ]
}

/// Validates the response to a line.
type Check = fn(&Line, &Value) -> bool;

/// What a line must get back.
enum Answer {
    /// One response with this id; the check validates it.
    Id(Value, Check),
    /// One error with id null.
    Null,
    /// Nothing.
    Nothing,
}

fn id_for(k: usize) -> Value {
    match k % 4 {
        0 => json!(1_000_000 + k),
        1 => json!(format!("s-{k}")),
        2 => json!(format!("é\"{k}\\")),
        _ => json!(-(k as i64) - 1),
    }
}

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or(0)
}

/// The bytes of a line (without newline) and what it must get back.
fn render(l: &Line, k: usize) -> (Vec<u8>, Answer) {
    let id = id_for(k);
    let req = |method: &str, params: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
    };
    let call =
        |name: &str, args: Value| req("tools/call", json!({"name": name, "arguments": args}));
    let pad = "x".repeat(MAX + 100);
    let (text, answer): (String, Answer) = match l {
        Line::Ping => (req("ping", json!({})), Answer::Id(id, |_, v| v["result"] == json!({}))),
        Line::ToolsList => (
            req("tools/list", json!({})),
            Answer::Id(id, |_, v| v["result"]["tools"].is_array()),
        ),
        Line::Echo(t) => (
            call("alpha__echo", json!({"text": t})),
            Answer::Id(id, |l, v| match l {
                Line::Echo(t) => v["result"]["content"][0]["text"] == json!(t),
                _ => false,
            }),
        ),
        Line::Sleep(ms) => (
            call("alpha__sleep", json!({"ms": ms})),
            Answer::Id(id, |l, v| match l {
                Line::Sleep(ms) => v["result"]["content"][0]["text"] == json!(format!("slept {ms}")),
                _ => false,
            }),
        ),
        Line::UnknownTool => (call("alpha__nope", json!({})), Answer::Id(id, |_, v| code(v) == -32602)),
        Line::UnknownMethod => (req("no/such", json!({})), Answer::Id(id, |_, v| code(v) == -32601)),
        Line::CallWithoutName => (
            req("tools/call", json!({"arguments": {}})),
            Answer::Id(id, |_, v| code(v) == -32602),
        ),
        Line::Initialize => (
            req("initialize", json!({"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"p","version":"1"}})),
            Answer::Id(id, |_, v| v["result"]["protocolVersion"] == "2025-06-18"),
        ),
        Line::NoMethod => (
            json!({"jsonrpc":"2.0","id":id,"params":{}}).to_string(),
            Answer::Id(id, |_, v| code(v) == -32600),
        ),
        Line::OversizedIdFirst => (
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\",\"params\":{{\"pad\":\"{pad}\"}}}}"),
            Answer::Id(id, |_, v| code(v) == -32005),
        ),
        Line::OversizedIdLast => (
            format!("{{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":{{\"pad\":\"{pad}\"}},\"id\":{id}}}"),
            Answer::Null,
        ),
        Line::Garbage(bytes) => {
            // '#' makes it never JSON and never blank.
            let mut b = vec![b'#'];
            b.extend(bytes.iter().filter(|b| **b != b'\n'));
            return (b, Answer::Null);
        }
        Line::NotObject(n) => (
            ["42", "\"s\"", "null", "true", "-0.5e3"][*n as usize % 5].to_string(),
            Answer::Null,
        ),
        Line::Batch => (format!("[{}]", req("ping", json!({}))), Answer::Null),
        Line::BadMethodType => (json!({"jsonrpc":"2.0","id":id,"method":7}).to_string(), Answer::Null),
        Line::Notification(n) => {
            let params = [json!(5), json!("x"), json!({"requestId": id}), json!(null), json!([1])];
            let method = ["notifications/cancelled", "notifications/initialized", "notifications/progress", "x/y"];
            (
                json!({"jsonrpc":"2.0","method":method[*n as usize % 4],"params":params[*n as usize % 5]}).to_string(),
                Answer::Nothing,
            )
        }
        Line::ClientResponse => (json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string(), Answer::Nothing),
        Line::Blank => (" \t\r".to_string(), Answer::Nothing),
    };
    (text.into_bytes(), answer)
}

fn one_case(d: &Daemon, lines: &[Line], splits: &[usize]) -> Result<(), TestCaseError> {
    let mut conn = RawConn::connect(&d.socket);
    let mut bytes = Vec::new();
    let mut want: BTreeMap<String, (usize, Check)> = BTreeMap::new();
    let mut nulls = 0usize;
    for (k, l) in lines.iter().enumerate() {
        let (b, answer) = render(l, k);
        bytes.extend(b);
        bytes.push(b'\n');
        match answer {
            Answer::Id(id, check) => {
                want.insert(id.to_string(), (k, check));
            }
            Answer::Null => nulls += 1,
            Answer::Nothing => {}
        }
    }
    // Write in random pieces: lines straddle reads on the daemon's side.
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = splits[i % splits.len()].min(bytes.len() - pos);
        conn.stream.write_all(&bytes[pos..pos + n]).expect("write");
        pos += n;
        i += 1;
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut got_nulls = 0;
    let expected = want.len() + nulls;
    let mut seen = 0;
    while seen < expected {
        let v = conn.read_json();
        seen += 1;
        if v["id"].is_null() {
            got_nulls += 1;
            prop_assert!(v["error"].is_object(), "{}", v);
            continue;
        }
        let key = v["id"].to_string();
        *got.entry(key.clone()).or_default() += 1;
        let Some((k, check)) = want.get(&key) else {
            prop_assert!(false, "a response to an id nobody used: {}", v);
            unreachable!();
        };
        prop_assert!(
            check(&lines[*k], &v),
            "wrong answer to {:?}: {}",
            lines[*k],
            v
        );
    }
    // Then a sentinel: anything before it is an extra answer.
    conn.send_line(r#"{"jsonrpc":"2.0","id":"sentinel","method":"ping"}"#);
    loop {
        let v = conn.read_json();
        if v["id"] == "sentinel" {
            break;
        }
        prop_assert!(false, "an extra message: {}", v);
    }
    prop_assert_eq!(got_nulls, nulls);
    for (id, n) in &got {
        prop_assert_eq!(*n, 1, "id {} answered {} times", id, n);
    }
    prop_assert_eq!(got.len(), want.len());
    Ok(())
}

#[test]
fn every_readable_request_gets_exactly_one_answer() {
    let env = Env::new();
    let d = env.start(&format!(
        "[daemon]\nmax_message_size = {MAX}\n\n{}",
        fixture_server("alpha", &[])
    ));
    d.wait_ready(&["alpha"]);
    let pid = d.server_status("alpha")["pid"].clone();
    let mut runner = TestRunner::new(crate::config(128));
    let strategy = (
        prop::collection::vec(line(), 1..30),
        prop::collection::vec(1usize..300, 1..6),
    );
    let result = runner.run(&strategy, |(lines, splits)| one_case(&d, &lines, &splits));
    if let Err(e) = result {
        panic!("{e}");
    }
    // The daemon is up, the child never restarted, and every session ended.
    let st = d.wait_status("no sessions left", |st| st["sessions"] == 0);
    assert_eq!(st["servers"][0]["pid"], pid, "{st:#}");
    assert_eq!(st["servers"][0]["restarts"], 0, "{st:#}");
}

#[derive(Debug, Clone)]
enum Call {
    Echo,
    Progress(u64),
    Sleep(u64),
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        prop_oneof![
            Just(Call::Echo),
            (1u64..4).prop_map(Call::Progress),
            (0u64..30).prop_map(Call::Sleep),
        ],
        1..7,
    )
}

/// Request `k` of client `who` (0 or 1). Both clients use the same ids and
/// the same progress tokens; only the payloads tell them apart (client 1's
/// progress has twice the steps of client 0's).
fn two_client_request(who: usize, k: usize, call: &Call) -> Value {
    let id = id_for(k);
    let token = if k % 2 == 0 {
        json!(format!("tok-{k}"))
    } else {
        json!(k)
    };
    let (name, args) = match call {
        Call::Echo => ("alpha__echo", json!({"text": format!("c{who}-{k}")})),
        Call::Progress(steps) => (
            "alpha__progress",
            json!({"steps": steps * (who as u64 + 1), "ms": 1}),
        ),
        Call::Sleep(ms) => (
            "alpha__sleep",
            json!({"ms": ms, "tag": format!("c{who}-{k}")}),
        ),
    };
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":name,"arguments":args,"_meta":{"progressToken":token}}})
}

fn expected_text(who: usize, k: usize, call: &Call) -> String {
    match call {
        Call::Echo => format!("c{who}-{k}"),
        Call::Progress(steps) => format!("done {}", steps * (who as u64 + 1)),
        Call::Sleep(ms) => format!("slept {ms} c{who}-{k}"),
    }
}

#[test]
fn equal_ids_and_progress_tokens_from_two_clients_never_cross() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    let mut runner = TestRunner::new(crate::config(32));
    let strategy = (calls(), calls(), prop::collection::vec(any::<bool>(), 14));
    let result = runner.run(&strategy, |(c0, c1, order)| {
        let plans = [c0, c1];
        let mut clients = [
            Client::initialized(&d.socket),
            Client::initialized(&d.socket),
        ];
        // Interleave the two clients' sends as `order` says.
        let mut next = [0usize, 0usize];
        let mut o = order.iter().cycle();
        while next[0] < plans[0].len() || next[1] < plans[1].len() {
            let pick = usize::from(*o.next().unwrap_or(&false));
            let who = if next[pick] < plans[pick].len() {
                pick
            } else {
                1 - pick
            };
            let k = next[who];
            clients[who].send(&two_client_request(who, k, &plans[who][k]));
            next[who] += 1;
        }
        for who in 0..2 {
            let c = &mut clients[who];
            for (k, call) in plans[who].iter().enumerate() {
                let r = c.response(&id_for(k));
                let want = expected_text(who, k, call);
                prop_assert_eq!(
                    r["result"]["content"][0]["text"].as_str(),
                    Some(want.as_str()),
                    "client {} request {}: {}",
                    who,
                    k,
                    r
                );
            }
            // Progress seen by this client: only its own requests', with its
            // own tokens, each step once, and no response for anyone else.
            let mut progress: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
            for v in c.received() {
                prop_assert_eq!(&v["method"], "notifications/progress", "unexpected {}", v);
                let token = v["params"]["progressToken"].to_string();
                let step = v["params"]["progress"].as_u64().unwrap_or(0);
                prop_assert!(
                    progress.entry(token).or_default().insert(step),
                    "step twice: {}",
                    v
                );
            }
            for (k, call) in plans[who].iter().enumerate() {
                let token = if k % 2 == 0 {
                    json!(format!("tok-{k}"))
                } else {
                    json!(k)
                };
                let steps: BTreeSet<u64> = match call {
                    Call::Progress(s) => (1..=s * (who as u64 + 1)).collect(),
                    _ => BTreeSet::new(),
                };
                let seen = progress.remove(&token.to_string()).unwrap_or_default();
                prop_assert_eq!(seen, steps, "client {} token {}", who, token);
            }
            prop_assert!(
                progress.is_empty(),
                "progress for tokens client {} never used: {:?}",
                who,
                progress
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
