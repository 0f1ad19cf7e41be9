//! `jsonrpc::Envelope::parse` on arbitrary bytes never panics and, on any
//! JSON text, classifies the message as `serde_json::Value` reads it;
//! `RawObject::to_string_with` keeps every member it does not replace byte
//! for byte.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use stdioproxy::jsonrpc::{Envelope, Kind, ParseError, RawObject};

/// What the envelope should say, derived from the parsed `Value`.
#[derive(Debug, PartialEq)]
enum Class {
    Batch,
    NotObject,
    Message {
        kind: Kind,
        id: Option<Value>,
        method: Option<String>,
    },
}

fn classify(v: &Value) -> Class {
    let m = match v {
        Value::Array(_) => return Class::Batch,
        Value::Object(m) => m,
        _ => return Class::NotObject,
    };
    let method = match m.get("method") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // `"method": 5` is not a request.
        Some(_) => return Class::NotObject,
    };
    let id = m.get("id").filter(|v| !v.is_null()).cloned();
    let answered = m.contains_key("result") || m.contains_key("error");
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if answered => Kind::Response,
        _ => Kind::Invalid,
    };
    Class::Message { kind, id, method }
}

fn envelope_class(bytes: &[u8]) -> Result<Class, String> {
    match Envelope::parse(bytes) {
        Ok(e) => Ok(Class::Message {
            kind: e.kind(),
            id: e
                .id
                .map(|raw| serde_json::from_str(raw.get()).expect("raw id is JSON")),
            method: e.method.map(|m| m.into_owned()),
        }),
        Err(ParseError::Batch) => Ok(Class::Batch),
        Err(ParseError::NotObject) => Ok(Class::NotObject),
        Err(ParseError::NotJson(why)) => Err(why),
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["2.0", "ping", "tools/call", "a\"b\\c", "é\u{2028}"])
            .prop_map(|s| Value::String(s.into())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["jsonrpc", "id", "method", "params", "result", "error"])
            .prop_map(String::from),
        1 => "[a-z\"\\\\é]{0,6}",
    ]
}

/// A JSON-RPC-shaped object: envelope keys with values of every type.
fn message() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// JSON text for `v`: compact, pretty, or with JSON whitespace around it.
fn render(v: &Value, style: u8) -> String {
    match style % 3 {
        0 => v.to_string(),
        1 => serde_json::to_string_pretty(v).expect("serialises"),
        _ => format!(" \t\r {v} \n"),
    }
}

proptest! {
    #![proptest_config(crate::config(2048))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = Envelope::parse(&bytes) {
            let _ = e.kind();
        }
    }

    #[test]
    fn parse_classifies_like_serde_json_value(v in prop_oneof![4 => message(), 1 => value()], style in any::<u8>()) {
        let text = render(&v, style);
        let reparsed: Value = serde_json::from_str(&text).expect("valid JSON");
        let got = envelope_class(text.as_bytes());
        prop_assert_eq!(got, Ok(classify(&reparsed)), "text: {}", text);
    }

    #[test]
    fn broken_json_is_a_parse_error_never_a_message(v in message(), cut in any::<prop::sample::Index>(), junk in "[\\]\\}:,\"x]{1,2}") {
        let text = v.to_string();
        // Cut it short, or append junk: no longer one JSON value.
        let mut cut_at = cut.index(text.len().max(1));
        while !text.is_char_boundary(cut_at) {
            cut_at -= 1;
        }
        let broken = [format!("{}{junk}", &text), text[..cut_at].to_string()];
        for b in broken {
            if serde_json::from_str::<serde::de::IgnoredAny>(&b).is_err() {
                let got = envelope_class(b.as_bytes());
                prop_assert!(got.is_err(), "{b:?} read as {got:?}");
            }
        }
    }

    #[test]
    fn to_string_with_keeps_other_members_byte_identical(
        members in prop::collection::btree_map(key(), (value(), any::<u8>()), 0..6),
        replace_keys in prop::collection::vec(key(), 0..3),
        spacing in prop::sample::select(vec!["", " ", "\n  ", "\t"]),
    ) {
        // The object as a client might have written it: odd spacing inside
        // values that the proxy must not touch.
        let raw_members: BTreeMap<String, String> = members
            .iter()
            .map(|(k, (v, style))| (k.clone(), render(v, *style).trim().to_string()))
            .collect();
        let body: Vec<String> = raw_members
            .iter()
            .map(|(k, raw)| format!("{spacing}{}{spacing}:{spacing}{raw}{spacing}", Value::String(k.clone())))
            .collect();
        let text = format!("{{{}}}", body.join(","));
        let raw: Box<RawValue> = serde_json::from_str(&text).expect("valid object");
        let obj = RawObject::parse(&raw).expect("an object");
        let replacements: Vec<(String, String)> = replace_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), format!("{{\"replaced\":{i}}}")))
            .collect();
        let pairs: Vec<(&str, &str)> = replacements.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = obj.to_string_with(&pairs);
        let parsed: BTreeMap<String, &RawValue> = serde_json::from_str(&out).expect("output is a JSON object");
        for (k, original) in &raw_members {
            if replace_keys.contains(k) {
                continue;
            }
            let kept = parsed.get(k).map(|r| r.get());
            prop_assert_eq!(kept, Some(original.as_str()), "member {:?} of {}", k, text);
        }
        // A key replaced twice: the last replacement is what a reader sees.
        for (k, v) in &replacements {
            let last = replacements.iter().rev().find(|(rk, _)| rk == k).map(|(_, v)| v);
            if last == Some(v) {
                prop_assert_eq!(parsed.get(k).map(|r| r.get()), Some(v.as_str()));
            }
        }
        let expected_keys: std::collections::BTreeSet<&String> =
            raw_members.keys().chain(replace_keys.iter()).collect();
        let got_keys: std::collections::BTreeSet<&String> = parsed.keys().collect();
        prop_assert_eq!(got_keys, expected_keys);
    }
}
