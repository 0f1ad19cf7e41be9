//! What a new user tripped over (issue 17), each through the real daemon and
//! shims: calls to a server that can never start, shortened tool names, the
//! first `tools/list` of a cold daemon, and `status` times.

use std::process::Command;

use serde_json::json;

use crate::support::*;

/// Runs `stdioproxy VERB --socket ...` to success; its stdout.
fn cli(env: &Env, verb: &str) -> String {
    let out = Command::new(DAEMON)
        .args([verb, "--socket"])
        .arg(&env.socket)
        .output()
        .expect("run stdioproxy");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{verb}: {text}");
    text
}

/// A fixture server with its own timeouts; `broken` makes it exit at start.
fn server(name: &str, timeouts: &str, broken: bool) -> String {
    let exit = if broken {
        ", FIXTURE_EXIT_AT_START = \"1\""
    } else {
        ""
    };
    format!(
        "[servers.{name}]\ncommand = \"{FIXTURE}\"\nrequest_timeout = \"5m\"\n{timeouts}\nenv = {{ FIXTURE_NAME = \"{name}\"{exit} }}\n"
    )
}

#[test]
fn a_call_to_a_server_that_cannot_start_fails_fast_with_the_reason() {
    let env = Env::new();
    // "again" retries quickly: calls fail once it failed 3 starts in a row.
    // "later" waits 10 s between attempts, longer than its startup_timeout
    // of 2 s: calls fail as soon as it is in that backoff. (Timeouts are
    // not part of the cache key; the first, working run keeps the defaults
    // so a loaded machine cannot make it miss them.)
    let config = |broken| {
        let later = if broken {
            "restart_backoff = \"10s\"\nstartup_timeout = \"2s\""
        } else {
            ""
        };
        format!(
            "{}\n{}",
            server("again", "restart_backoff = \"100ms\"", broken),
            server("later", later, broken)
        )
    };
    // First run: both start, so their tools are cached.
    let mut d = env.start(&config(false));
    d.wait_ready(&["again", "later"]);
    d.stop();

    // Now neither can start, but clients see their cached tools and call one.
    let d = env.start(&config(true));
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(names.contains(&"again__echo".to_string()), "{names:?}");
    for name in ["again", "later"] {
        let r = c.request(
            "tools/call",
            json!({"name": format!("{name}__echo"), "arguments": {"text": "x"}}),
        );
        // Not request_timeout (5 minutes): the response above came within
        // the client's wait of a few seconds.
        assert_eq!(r["error"]["code"], -32001, "{r}");
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("server '{name}' is not ready (state: "))
                && message.contains("; last error: ")
                && message.contains("exit status 1"),
            "{message}"
        );
    }
    let later = d.server_status("later");
    assert!(
        later["failed_starts"].as_u64().unwrap_or(0) < 3,
        "\"later\" failed by its backoff, not by the count: {later}"
    );
    let again = d.server_status("again");
    assert!(again["failed_starts"].as_u64().unwrap_or(0) >= 3, "{again}");
}

#[test]
fn a_server_that_crashes_after_running_still_makes_calls_wait() {
    let env = Env::new();
    let d = env.start(&server("flaky", "restart_backoff = \"300ms\"", false));
    d.wait_ready(&["flaky"]);
    let mut c = Client::initialized(&env.socket);
    // It ran fine and crashes now: a call made during its backoff waits for
    // the restart and succeeds.
    let crash = c.send_request(
        "tools/call",
        json!({"name": "flaky__crash", "arguments": {}}),
    );
    c.response(&crash);
    let r = c.request(
        "tools/call",
        json!({"name": "flaky__echo", "arguments": {"text": "back"}}),
    );
    assert_eq!(r["result"]["content"][0]["text"], "back", "{r}");
    assert_eq!(d.server_status("flaky")["failed_starts"], 0);
}

#[test]
fn status_shows_local_times_and_ages_and_json_keeps_the_numbers() {
    let env = Env::new();
    let d = env.start(&fixture_server("alpha", &[]));
    d.wait_ready(&["alpha"]);
    cli(&env, "reload");
    let text = cli(&env, "status");
    assert!(!text.contains("since epoch"), "{text}");
    let reload = text
        .lines()
        .find(|l| l.starts_with("last reload: "))
        .unwrap_or_else(|| panic!("no reload line: {text}"));
    assert!(reload.contains(" s ago)"), "{reload}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("started: ") && l.ends_with(" s ago)")),
        "{text}"
    );
    // No raw unix seconds in the table.
    let json = d.status();
    let at = json["config"]["last_reload"]["at_unix"]
        .as_u64()
        .expect("at_unix in --json");
    assert!(!text.contains(&at.to_string()), "{text}");
    let started = json["servers"][0]["started_at_unix"]
        .as_u64()
        .expect("started_at_unix");
    assert!(started <= at, "{json}");
}

#[test]
fn a_shortened_tool_name_keeps_its_original_in_the_entry_and_in_status() {
    let env = Env::new();
    let long = "tool_name_of_forty_seven_characters_long_enough";
    let server = "twenty_char_server_x";
    let original = format!("{server}__{long}");
    let d = env.start(&fixture_server(server, &[("FIXTURE_TOOL_NAMES", long)]));
    d.wait_ready(&[server]);
    let mut c = Client::initialized(&env.socket);
    let tool = c
        .list_tools()
        .into_iter()
        .find(|t| t["_meta"]["stdioproxy/originalName"] == original.as_str())
        .expect("the shortened tool carries its original name");
    let name = tool["name"].as_str().expect("name").to_string();
    assert!(name.len() <= 64 && name != original, "{name}");
    assert_eq!(tool["title"], original.as_str(), "{tool}");
    assert_eq!(c.call_text(&name, json!({})), format!("called {long}"));

    let shortened = &d.server_status(server)["shortened_tools"];
    assert_eq!(shortened, &json!([{"name": name, "original": original}]));
    let text = cli(&env, "status");
    assert!(
        text.contains(&format!("tool {name} is {original}")),
        "{text}"
    );
}

/// A daemon whose "slow" server takes `delay_ms` to answer initialize.
fn slow_pair(delay_ms: u32, daemon: &str) -> String {
    format!(
        "{daemon}\n{}\n{}",
        fixture_server("quick", &[]),
        fixture_server(
            "slow",
            &[("FIXTURE_STARTUP_DELAY_MS", &delay_ms.to_string())]
        )
    )
}

#[test]
fn a_cold_daemon_holds_the_first_tools_list_until_every_server_started() {
    let env = Env::new();
    let mut d = env.start(&slow_pair(1500, ""));
    // Connected while "slow" is still starting, with no cache yet.
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(
        names.contains(&"quick__echo".to_string()) && names.contains(&"slow__echo".to_string()),
        "the first list waited for both servers: {names:?}"
    );
    d.stop();

    // Warm: the cache answers at once, while "slow" is still starting.
    let d = env.start(&slow_pair(3000, ""));
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(names.contains(&"slow__echo".to_string()), "{names:?}");
    assert_eq!(d.server_status("slow")["state"], "starting");
}

#[test]
fn the_first_list_wait_is_bounded_and_says_what_was_missing() {
    let env = Env::new();
    let d = env.start(&slow_pair(
        20_000,
        "[daemon]\nfirst_list_wait = \"300ms\"\n",
    ));
    d.wait_ready(&["quick"]);
    let mut c = Client::initialized(&env.socket);
    let names = c.tool_names();
    assert!(names.contains(&"quick__echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("slow__")), "{names:?}");
    d.log.wait_for(&[
        "first tools/list answered while these servers were still starting",
        "missing=slow",
    ]);
}
