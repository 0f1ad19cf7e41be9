//! The MCP surface beyond tools, through the real daemon and shims with the
//! fixture server as children: prompts, completion, resources (templates,
//! fallback, subscriptions), logging per session, requests from children to
//! clients (sampling, elicitation, roots), cancellation, reused ids, tasks,
//! tool filters.
//!
//! To show that something did NOT reach a session, the tests send that
//! session a request afterwards and look at what arrived before its answer:
//! each session's messages are delivered in order, so anything routed to it
//! earlier would be there.

use serde_json::{json, Value};

use crate::support::*;

fn text(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {r}"))
        .to_string()
}

/// Everything that reached `c` before the answer to a fresh ping.
fn drain(c: &mut Client) -> Vec<Value> {
    let id = c.send_request("ping", json!({}));
    c.response(&id);
    let mut seen = Vec::new();
    while let Some(v) = c.try_backlog(|_| true) {
        seen.push(v);
    }
    seen
}

#[test]
fn initialize_declares_the_aggregated_capabilities() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut c = Client::connect(&env.socket);
    let init = c.initialize();
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], true, "{init}");
    assert_eq!(caps["prompts"]["listChanged"], true, "{init}");
    assert_eq!(caps["resources"]["subscribe"], true, "{init}");
    assert!(
        caps["logging"].is_object() && caps["completions"].is_object(),
        "{init}"
    );
    assert!(
        caps["tasks"]["list"].is_object(),
        "the fixture supports tasks: {init}"
    );
    assert!(
        caps["tasks"]["requests"]["tools"]["call"].is_object(),
        "{init}"
    );
}

#[test]
fn prompts_are_prefixed_routed_and_completed() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut c = Client::initialized(&env.socket);
    let r = c.request("prompts/list", json!({}));
    let names: Vec<&str> = r["result"]["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"alpha__greet") && names.contains(&"beta__greet"),
        "{names:?}"
    );
    let odd = names
        .iter()
        .find(|n| n.starts_with("alpha__odd_prompt_name_"))
        .unwrap_or_else(|| panic!("sanitised prompt name missing: {names:?}"));
    assert!(
        odd.len() <= 64
            && odd
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let greet = r["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "beta__greet")
        .unwrap();
    assert_eq!(
        greet["arguments"][0]["name"], "who",
        "fields pass through: {greet}"
    );

    let r = c.request(
        "prompts/get",
        json!({"name": "beta__greet", "arguments": {"who": "ann"}}),
    );
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "Hello ann from beta",
        "{r}"
    );
    let r = c.request("prompts/get", json!({"name": odd}));
    assert_eq!(r["result"]["messages"][0]["content"]["text"], "odd", "{r}");
    let r = c.request("prompts/get", json!({"name": "alpha__nope"}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alpha__nope"),
        "{r}"
    );

    let r = c.request(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "alpha__greet"},
               "argument": {"name": "who", "value": "al"}}),
    );
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["alice", "albert"]),
        "{r}"
    );
    let r = c.request(
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "fixture://beta/items/{id}"},
               "argument": {"name": "id", "value": "2"}}),
    );
    assert_eq!(r["result"]["completion"]["values"], json!(["2"]), "{r}");
}

#[test]
fn resources_keep_uris_and_route_by_uri_template_then_fallback() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut c = Client::initialized(&env.socket);
    let r = c.request("resources/list", json!({}));
    let resources = r["result"]["resources"].as_array().expect("resources");
    let alpha = resources
        .iter()
        .find(|x| x["uri"] == "fixture://alpha/readme")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(alpha["name"], "alpha__readme");
    assert_eq!(alpha["mimeType"], "text/plain");
    let r = c.request("resources/templates/list", json!({}));
    let t = &r["result"]["resourceTemplates"];
    assert!(
        t.as_array()
            .unwrap()
            .iter()
            .any(|x| x["uriTemplate"] == "fixture://beta/items/{id}" && x["name"] == "beta__item"),
        "{r}"
    );

    let read = |c: &mut Client, uri: &str| c.request("resources/read", json!({ "uri": uri }));
    let r = read(&mut c, "fixture://beta/readme");
    assert_eq!(r["result"]["contents"][0]["text"], "readme of beta", "{r}");
    let r = read(&mut c, "fixture://alpha/items/7");
    assert_eq!(r["result"]["contents"][0]["text"], "item 7 of alpha", "{r}");
    // Neither listed nor templated: alpha says not found, beta has it.
    let r = read(&mut c, "fixture://beta/hidden/x");
    assert_eq!(r["result"]["contents"][0]["text"], "hidden of beta", "{r}");
    let r = read(&mut c, "nowhere://x");
    assert_eq!(r["error"]["code"], -32002, "{r}");

    // A server's resources/list_changed reaches the client, once.
    let _ = drain(&mut c);
    c.call("alpha__add_resource", json!({"name": "extra"}));
    c.notification("notifications/resources/list_changed");
    let r = c.request("resources/list", json!({}));
    assert!(
        r["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["uri"] == "fixture://alpha/extra" && x["name"] == "alpha__extra"),
        "{r}"
    );
    let later = drain(&mut c);
    assert!(
        !later
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "only the resources changed: {later:?}"
    );
}

#[test]
fn subscriptions_are_counted_across_sessions_and_survive_restarts() {
    let env = Env::new();
    let d = two_fixtures(&env);
    let uri = "fixture://alpha/readme";
    let mut c1 = Client::initialized(&env.socket);
    let mut c2 = Client::initialized(&env.socket);
    let mut c3 = Client::initialized(&env.socket);
    for c in [&mut c1, &mut c2] {
        let r = c.request("resources/subscribe", json!({ "uri": uri }));
        assert_eq!(r["result"], json!({}), "{r}");
    }
    assert_eq!(
        text(&c3.call("alpha__subscriptions", json!({}))),
        json!([uri]).to_string(),
        "one upstream subscription"
    );
    assert_eq!(
        text(&c3.call("alpha__touch", json!({ "uri": uri }))),
        "updated"
    );
    for c in [&mut c1, &mut c2] {
        let n = c.notification("notifications/resources/updated");
        assert_eq!(n["params"]["uri"], uri);
    }
    assert!(
        !drain(&mut c3)
            .iter()
            .any(|m| m["method"] == "notifications/resources/updated"),
        "c3 did not subscribe"
    );

    // c1 leaves by unsubscribing, c2 by disconnecting: then nobody watches.
    assert_eq!(
        c1.request("resources/unsubscribe", json!({ "uri": uri }))["result"],
        json!({})
    );
    assert_eq!(
        text(&c3.call("alpha__subscriptions", json!({}))),
        json!([uri]).to_string()
    );
    c3.call("alpha__touch", json!({ "uri": uri }));
    c2.notification("notifications/resources/updated");
    assert!(!drain(&mut c1)
        .iter()
        .any(|m| m["method"] == "notifications/resources/updated"));
    drop(c2);
    let until = std::time::Instant::now() + WAIT;
    while text(&c3.call("alpha__subscriptions", json!({}))) != "[]" {
        assert!(
            std::time::Instant::now() < until,
            "the child was never unsubscribed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A new instance after a crash is subscribed again.
    c1.request("resources/subscribe", json!({ "uri": uri }));
    let pid = d.server_status("alpha")["pid"].clone();
    c3.call("alpha__crash", json!({}));
    d.wait_status("alpha restarted", |st| {
        st["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "alpha" && s["state"] == "ready" && s["pid"] != pid)
    });
    let until = std::time::Instant::now() + WAIT;
    let one = json!([uri]).to_string();
    while text(&c3.call("alpha__subscriptions", json!({}))) != one {
        assert!(
            std::time::Instant::now() < until,
            "not re-subscribed after the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_child_that_never_answers_one_subscribe_holds_up_only_that_uri() {
    let env = Env::new();
    let hung = "fixture://alpha/items/1";
    let d = env.start(&fixture_server(
        "alpha",
        &[("FIXTURE_HANG_SUBSCRIBE", hung)],
    ));
    d.wait_ready(&["alpha"]);
    let mut c1 = Client::initialized(&env.socket);
    let mut c2 = Client::initialized(&env.socket);
    // c1's subscribe reaches the child, which never answers it (it would
    // time out only after request_timeout, 300 s by default).
    let pending = c1.send_request("resources/subscribe", json!({ "uri": hung }));
    d.log
        .wait_for(&["holding resources/subscribe fixture://alpha/items/1"]);
    // Another URI of the same server is subscribed and unsubscribed at once
    // (each request waits at most WAIT for its answer).
    let readme = "fixture://alpha/readme";
    let r = c2.request("resources/subscribe", json!({ "uri": readme }));
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(
        text(&c2.call("alpha__subscriptions", json!({}))),
        json!([readme]).to_string()
    );
    let r = c2.request("resources/unsubscribe", json!({ "uri": readme }));
    assert_eq!(r["result"], json!({}), "{r}");
    assert!(
        c1.try_backlog(|m| m.get("id") == Some(&pending)).is_none(),
        "the hung subscribe was answered"
    );
}

#[test]
fn log_levels_are_per_session_and_the_child_gets_the_most_verbose() {
    let env = Env::new();
    let d = two_fixtures(&env);
    let mut verbose = Client::initialized(&env.socket);
    let mut quiet = Client::initialized(&env.socket);
    let mut unset = Client::initialized(&env.socket);
    assert_eq!(
        verbose.request("logging/setLevel", json!({"level": "debug"}))["result"],
        json!({})
    );
    assert_eq!(
        quiet.request("logging/setLevel", json!({"level": "error"}))["result"],
        json!({})
    );
    let r = quiet.request("logging/setLevel", json!({"level": "loud"}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let until = std::time::Instant::now() + WAIT;
    while text(&unset.call("alpha__log_level", json!({}))) != "debug" {
        assert!(
            std::time::Instant::now() < until,
            "child never set to debug"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    unset.call("alpha__log", json!({"level": "info", "data": "i1"}));
    unset.call(
        "alpha__log",
        json!({"level": "error", "data": "e1", "logger": "db"}),
    );
    let got = |c: &mut Client| -> Vec<(String, String)> {
        drain(c)
            .into_iter()
            .filter(|m| m["method"] == "notifications/message")
            .map(|m| {
                (
                    m["params"]["data"].as_str().unwrap().to_string(),
                    m["params"]["logger"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let both = vec![
        ("i1".to_string(), "alpha".to_string()),
        ("e1".to_string(), "alpha/db".to_string()),
    ];
    assert_eq!(got(&mut verbose), both);
    assert_eq!(got(&mut unset), both, "no level set: everything");
    assert_eq!(got(&mut quiet), vec![("e1".into(), "alpha/db".into())]);

    // The debug session leaves: the child is set to the next most verbose.
    drop(verbose);
    let until = std::time::Instant::now() + WAIT;
    while text(&unset.call("alpha__log_level", json!({}))) != "error" {
        assert!(std::time::Instant::now() < until, "child level not lowered");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(d.server_status("alpha")["log_level"], "error");
}

fn sampling_params() -> Value {
    json!({"method": "sampling/createMessage",
           "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 5}})
}

#[test]
fn sampling_goes_to_the_requester_or_the_most_recent_capable_client() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut capable = Client::connect(&env.socket);
    capable.initialize_with(json!({"sampling": {}}));
    let mut plain = Client::initialized(&env.socket);

    // The only session with a call in flight, and it can sample.
    let call = capable.send_request(
        "tools/call",
        json!({"name": "alpha__ask", "arguments": sampling_params()}),
    );
    let req = capable.incoming_request("sampling/createMessage");
    assert_eq!(req["params"]["maxTokens"], 5, "params pass through: {req}");
    capable.send(&json!({"jsonrpc": "2.0", "id": req["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m"}}));
    let r = capable.response(&call);
    let answer: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(answer["result"]["content"]["text"], "sampled", "{answer}");
    assert_eq!(
        answer["id"], "fx-1",
        "the child got its own id back: {answer}"
    );

    // The asker cannot sample: the most recent capable requester gets it.
    let call = plain.send_request(
        "tools/call",
        json!({"name": "alpha__ask", "arguments": sampling_params()}),
    );
    let req = capable.incoming_request("sampling/createMessage");
    capable.send(&json!({"jsonrpc": "2.0", "id": req["id"],
        "error": {"code": -1, "message": "user declined"}}));
    let answer: Value = serde_json::from_str(&text(&plain.response(&call))).unwrap();
    assert_eq!(answer["error"]["message"], "user declined", "{answer}");
    assert!(
        !drain(&mut plain)
            .iter()
            .any(|m| m["method"] == "sampling/createMessage"),
        "never sent to a client that did not declare sampling"
    );

    // Nobody who uses beta can sample: the child gets a clear error.
    let answer: Value =
        serde_json::from_str(&text(&plain.call("beta__ask", sampling_params()))).unwrap();
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sampling"),
        "{answer}"
    );

    // A child's ping reaches the client that uses it.
    let call = plain.send_request(
        "tools/call",
        json!({"name": "beta__ask", "arguments": {"method": "ping"}}),
    );
    let req = plain.incoming_request("ping");
    plain.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {}}));
    let answer: Value = serde_json::from_str(&text(&plain.response(&call))).unwrap();
    assert_eq!(answer["result"], json!({}), "{answer}");

    // The child cancels its request: the client is told, under its id.
    let mut args = sampling_params();
    args["cancel_after_ms"] = json!(100);
    let call = capable.send_request(
        "tools/call",
        json!({"name": "alpha__ask", "arguments": args}),
    );
    let req = capable.incoming_request("sampling/createMessage");
    let n = capable.notification("notifications/cancelled");
    assert_eq!(n["params"]["requestId"], req["id"], "{n}");
    assert_eq!(text(&capable.response(&call)), "cancelled");
}

#[test]
fn elicitation_follows_the_declared_modes() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut form_only = Client::connect(&env.socket);
    form_only.initialize_with(json!({"elicitation": {}}));
    let url = json!({"method": "elicitation/create",
        "params": {"mode": "url", "message": "log in", "elicitationId": "e1", "url": "https://example.com"}});
    let answer: Value =
        serde_json::from_str(&text(&form_only.call("alpha__ask", url.clone()))).unwrap();
    assert_eq!(
        answer["error"]["code"], -32601,
        "form-only client gets no url mode: {answer}"
    );

    let mut both = Client::connect(&env.socket);
    both.initialize_with(json!({"elicitation": {"form": {}, "url": {}}}));
    let call = both.send_request(
        "tools/call",
        json!({"name": "alpha__ask", "arguments": url}),
    );
    let req = both.incoming_request("elicitation/create");
    assert_eq!(req["params"]["elicitationId"], "e1");
    both.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": {"action": "accept"}}));
    let answer: Value = serde_json::from_str(&text(&both.response(&call))).unwrap();
    assert_eq!(answer["result"]["action"], "accept", "{answer}");
}

#[test]
fn roots_come_from_the_config_never_from_a_client() {
    let env = Env::new();
    let d = env.start(&format!(
        "{}roots = [\"/srv/a b\", \"/data\"]\n\n{}",
        fixture_server("rooted", &[]),
        fixture_server("plain", &[])
    ));
    d.wait_ready(&["rooted", "plain"]);
    let mut c = Client::connect(&env.socket);
    c.initialize_with(json!({"roots": {"listChanged": true}}));
    let caps: Value =
        serde_json::from_str(&text(&c.call("rooted__client_capabilities", json!({})))).unwrap();
    assert_eq!(caps["roots"], json!({"listChanged": true}), "{caps}");
    assert!(caps["sampling"].is_object(), "{caps}");
    let caps: Value =
        serde_json::from_str(&text(&c.call("plain__client_capabilities", json!({})))).unwrap();
    assert!(
        caps.get("roots").is_none(),
        "no roots configured, none declared: {caps}"
    );

    let answer: Value = serde_json::from_str(&text(
        &c.call("rooted__ask", json!({"method": "roots/list"})),
    ))
    .unwrap();
    assert_eq!(
        answer["result"]["roots"],
        json!([{"uri": "file:///srv/a%20b", "name": "a b"}, {"uri": "file:///data", "name": "data"}]),
        "{answer}"
    );
    assert!(
        !drain(&mut c).iter().any(|m| m["method"] == "roots/list"),
        "the client was never asked"
    );
    let answer: Value = serde_json::from_str(&text(
        &c.call("plain__ask", json!({"method": "roots/list"})),
    ))
    .unwrap();
    assert_eq!(answer["error"]["code"], -32601, "{answer}");

    // A new list of roots applies in place.
    let pid = d.server_status("rooted")["pid"].clone();
    env.write_config(&format!(
        "{}roots = [\"/data\"]\n\n{}",
        fixture_server("rooted", &[]),
        fixture_server("plain", &[])
    ));
    d.wait_status("reloaded", |st| {
        st["config"]["last_reload"]["result"] == "applied"
    });
    let answer: Value = serde_json::from_str(&text(
        &c.call("rooted__ask", json!({"method": "roots/list"})),
    ))
    .unwrap();
    assert_eq!(
        answer["result"]["roots"],
        json!([{"uri": "file:///data", "name": "data"}])
    );
    assert_eq!(d.server_status("rooted")["pid"], pid, "no new process");
}

#[test]
fn cancellation_and_reused_ids() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut c = Client::initialized(&env.socket);

    // Cancelled by the client: the child is told, the late answer dropped.
    c.send(
        &json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
        "params": {"name": "alpha__sleep", "arguments": {"ms": 300}}}),
    );
    c.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "slow", "reason": "changed my mind"}}),
    );
    let until = std::time::Instant::now() + WAIT;
    while text(&c.call("alpha__cancelled", json!({}))) == "[]" {
        assert!(
            std::time::Instant::now() < until,
            "the child never got the cancellation"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Outlast the cancelled call, then check nothing came back for it.
    c.call("alpha__sleep", json!({"ms": 600}));
    assert!(
        !drain(&mut c).iter().any(|m| m["id"] == "slow"),
        "a cancelled request got an answer"
    );

    // Progress after a cancel is dropped too.
    c.send(
        &json!({"jsonrpc": "2.0", "id": "prog", "method": "tools/call",
        "params": {"name": "beta__progress", "arguments": {"steps": 20, "ms": 50},
                   "_meta": {"progressToken": "p"}}}),
    );
    c.notification("notifications/progress");
    c.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "prog"}}),
    );
    let until = std::time::Instant::now() + WAIT;
    while text(&c.call("beta__cancelled", json!({}))) == "[]" {
        assert!(
            std::time::Instant::now() < until,
            "the child never got the cancellation"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.call("beta__sleep", json!({"ms": 1200}));
    let late = drain(&mut c);
    assert!(!late.iter().any(|m| m["id"] == "prog"), "{late:?}");
    let progress = late
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    // At most what was already on its way when the cancel arrived (all 19
    // would come if late progress were not dropped).
    assert!(
        progress <= 3,
        "progress kept coming after the cancel: {late:?}"
    );

    // A disconnect cancels what is still in flight.
    let mut gone = Client::initialized(&env.socket);
    gone.send_request(
        "tools/call",
        json!({"name": "beta__sleep", "arguments": {"ms": 5000}}),
    );
    gone.request("ping", json!({}));
    drop(gone);
    let until = std::time::Instant::now() + WAIT;
    while text(&c.call("beta__cancelled", json!({}))) == "[]" {
        assert!(
            std::time::Instant::now() < until,
            "disconnect did not cancel upstream"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // An id still in flight cannot be reused; once answered it can.
    let call = |id: i64, ms: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "alpha__sleep", "arguments": {"ms": ms}}})
    };
    c.send(&call(77, 300));
    c.send(&call(77, 1));
    let first = c.response(&json!(77));
    assert_eq!(first["error"]["code"], -32600, "{first}");
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in use"),
        "{first}"
    );
    let second = c.response(&json!(77));
    assert_eq!(text(&second), "slept 300");
    c.send(&call(77, 1));
    assert_eq!(text(&c.response(&json!(77))), "slept 1");
}

#[test]
fn tasks_get_daemon_ids_and_stay_with_their_session() {
    let env = Env::new();
    let _d = two_fixtures(&env);
    let mut owner = Client::initialized(&env.socket);
    let mut other = Client::initialized(&env.socket);
    let r = owner.request(
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"text": "in a task"}, "task": {"ttl": 60000}}),
    );
    let task_id = r["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {r}"))
        .to_string();
    assert!(task_id.starts_with("sp-alpha-"), "{task_id}");
    let status = owner.notification("notifications/tasks/status");
    assert_eq!(status["params"]["taskId"], task_id.as_str(), "{status}");
    assert_eq!(status["params"]["status"], "completed");

    let r = owner.request("tasks/get", json!({ "taskId": task_id }));
    assert_eq!(r["result"]["taskId"], task_id.as_str(), "{r}");
    let r = owner.request("tasks/result", json!({ "taskId": task_id }));
    assert_eq!(text(&r), "in a task");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task_id.as_str(),
        "{r}"
    );
    let r = owner.request("tasks/list", json!({}));
    let listed: Vec<&str> = r["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![task_id.as_str()], "{r}");

    let r = other.request("tasks/get", json!({ "taskId": task_id }));
    assert_eq!(r["error"]["code"], -32602, "another session's task: {r}");
    let r = other.request("tasks/list", json!({}));
    assert_eq!(r["result"]["tasks"], json!([]), "{r}");
    assert!(
        !drain(&mut other)
            .iter()
            .any(|m| m["method"] == "notifications/tasks/status"),
        "status went to the owner only"
    );
}

#[test]
fn tool_filters_hide_tools_and_change_in_place() {
    let env = Env::new();
    let filtered = |filter: &str| format!("{}tools = {filter}\n", fixture_server("alpha", &[]));
    let d = env.start(&filtered("{ deny = [\"crash\", \"b*\"] }"));
    d.wait_ready(&["alpha"]);
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(names.contains(&"alpha__echo".to_string()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n == "alpha__crash" || n == "alpha__big"),
        "{names:?}"
    );
    assert_eq!(c.call("alpha__crash", json!({}))["error"]["code"], -32602);

    let pid = d.server_status("alpha")["pid"].clone();
    env.write_config(&filtered("{ allow = [\"echo\", \"add\"] }"));
    c.notification("notifications/tools/list_changed");
    let mut names = c.tool_names();
    names.sort();
    assert_eq!(names, vec!["alpha__add", "alpha__echo"]);
    assert_eq!(
        d.server_status("alpha")["pid"],
        pid,
        "filters apply in place"
    );
    assert_eq!(d.server_status("alpha")["tools"], 2);
}

#[test]
fn fields_and_numbers_no_spec_knows_pass_through_byte_for_byte() {
    let env = Env::new();
    // Valid JSON that no f64 holds, a member no spec has, odd spacing.
    let raw = r#"{"name":"huge","inputSchema":{"type":"object","properties":{"n":{"type":"number","maximum":1e999}}},"x-future":{"a":[1, 2]}}"#;
    let cfg = format!(
        "[servers.odd]\ncommand = \"{FIXTURE}\"\nenv = {{ FIXTURE_NAME = \"odd\", FIXTURE_RAW_TOOL = '{raw}' }}\n"
    );
    let d = env.start(&cfg);
    d.wait_ready(&["odd"]);
    let mut c = RawConn::connect(&env.socket);
    c.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let line = c.read_line().expect("a tools/list answer");
    let expected = raw.replacen(r#""name":"huge""#, r#""name":"odd__huge""#, 1);
    assert!(
        line.contains(&expected),
        "the definition must arrive verbatim: {line}"
    );
    c.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"odd__echo","arguments":{"text":"x"},"x-future":{"k": [1, 2]}}}"#);
    let answer = c.read_json();
    assert_eq!(answer["result"]["content"][0]["text"], "x", "{answer}");
}
