//! Editing the `mcpServers` object inside the user's JSON text, so that
//! everything else stays byte for byte: other entries, other keys, their
//! whitespace and the way numbers are written.
//!
//! Only three edits are needed: replace an entry's value in place, remove an
//! entry (with its comma), and append an entry after the last one. New text
//! follows the file's own indentation (detected from the members around
//! it) or stays on one line in a one-line file. Anything this cannot place
//! (no members to learn the layout from, a top level that is not an object)
//! returns `None`, and the caller renders the whole file instead; the
//! caller also re-parses the result and compares it with the intended
//! document, so a splice can never change what the file means.

use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

use crate::jsonrpc::RawObject;

/// How new members are laid out in one object.
struct Layout {
    /// `None` for a one-line object; else the indentation of its members.
    indent: Option<String>,
    /// One level of indentation (for the lines inside a new value).
    unit: String,
}

/// `text` with `mcpServers` edited: `set` members replaced or appended,
/// `remove` members taken out. `None` when the text cannot be edited in
/// place.
pub(super) fn edit(text: &str, set: &[(String, Value)], remove: &[String]) -> Option<String> {
    let root = RawObject::parse_str(text)?;
    let root_layout = layout(text, &root, "")?;
    let found = root
        .value_ranges()
        .find(|(k, _)| *k == "mcpServers")
        .map(|(_, r)| r);
    let Some(range) = found
        .clone()
        .filter(|r| text[r.clone()].trim_start().starts_with('{'))
    else {
        // No object yet: one new member holding every entry.
        let servers: serde_json::Map<String, Value> = set.iter().cloned().collect();
        let value = Value::Object(servers);
        return match found {
            // "mcpServers": null
            Some(r) => Some(splice(text, r, &render(&value, &root_layout, 1))),
            None => Some(append(text, &root, &root_layout, "mcpServers", &value)),
        };
    };
    let outer = root_layout.indent.clone().unwrap_or_default();
    let mut servers = text[range.clone()].to_string();
    for (key, value) in set {
        servers = set_member(&servers, key, value, &root_layout, &outer)?;
    }
    for key in remove {
        servers = remove_member(&servers, key)?;
    }
    Some(splice(text, range, &servers))
}

fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    format!("{}{with}{}", &text[..range.start], &text[range.end..])
}

/// The layout of `obj`'s members; `outer` is the indentation of the line
/// the object starts on. `None` when it has no members to learn from.
fn layout(text: &str, obj: &RawObject<'_>, outer: &str) -> Option<Layout> {
    obj.value_ranges().next()?;
    let open = text.find('{')?;
    let key_start = key_start(text, open + 1)?;
    let before = &text[open + 1..key_start];
    Some(match before.rfind('\n') {
        Some(nl) => {
            let indent = before[nl + 1..].to_string();
            let unit = indent
                .strip_prefix(outer)
                .filter(|u| !u.is_empty())
                .unwrap_or("  ")
                .to_string();
            Layout {
                indent: Some(indent),
                unit,
            }
        }
        None => Layout {
            indent: None,
            unit: String::new(),
        },
    })
}

/// The first non-whitespace byte at or after `from`.
fn key_start(text: &str, from: usize) -> Option<usize> {
    text[from..]
        .find(|c: char| !c.is_whitespace())
        .map(|i| from + i)
}

/// `value` as JSON laid out for `layout`, `depth` levels inside it (the
/// first line is not indented: it follows the key).
fn render(value: &Value, layout: &Layout, depth: usize) -> String {
    let Some(indent) = &layout.indent else {
        return value.to_string();
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(layout.unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    let pretty = String::from_utf8_lossy(&out).into_owned();
    let base = format!("{indent}{}", layout.unit.repeat(depth.saturating_sub(1)));
    pretty.replace('\n', &format!("\n{base}"))
}

fn json_key(key: &str) -> String {
    Value::from(key).to_string()
}

/// Appends `"key": value` after the last member of the object `text`.
fn append(text: &str, obj: &RawObject<'_>, layout: &Layout, key: &str, value: &Value) -> String {
    let end = obj.value_ranges().last().map_or(0, |(_, r)| r.end);
    let member = match &layout.indent {
        Some(indent) => format!(",\n{indent}{}: {}", json_key(key), render(value, layout, 1)),
        None => format!(",{}:{}", json_key(key), render(value, layout, 1)),
    };
    format!("{}{member}{}", &text[..end], &text[end..])
}

/// The servers object `obj` with `key` set to `value` (in place, or
/// appended with the layout of the other members).
fn set_member(obj: &str, key: &str, value: &Value, root: &Layout, outer: &str) -> Option<String> {
    let o = RawObject::parse_str(obj)?;
    let mut layout = match layout(obj, &o, outer) {
        Some(l) => l,
        // An empty object: one level deeper than the top level's members.
        None => Layout {
            indent: root.indent.as_ref().map(|i| format!("{i}{}", root.unit)),
            unit: root.unit.clone(),
        },
    };
    if layout.indent.is_some() && root.indent.is_none() {
        layout.indent = None;
    }
    if let Some((_, r)) = o.value_ranges().find(|(k, _)| *k == key) {
        return Some(splice(obj, r, &render(value, &layout, 1)));
    }
    if o.value_ranges().next().is_some() {
        return Some(append(obj, &o, &layout, key, value));
    }
    // The first member of an empty object.
    let close = obj.rfind('}')?;
    Some(match &layout.indent {
        Some(indent) => format!(
            "{{\n{indent}{}: {}\n{outer}}}{}",
            json_key(key),
            render(value, &layout, 1),
            &obj[close + 1..]
        ),
        None => format!(
            "{{{}:{}}}{}",
            json_key(key),
            render(value, &layout, 1),
            &obj[close + 1..]
        ),
    })
}

/// The object `obj` without member `key` (and the comma that joined it).
fn remove_member(obj: &str, key: &str) -> Option<String> {
    let o = RawObject::parse_str(obj)?;
    let ranges: Vec<Range<usize>> = o.value_ranges().map(|(_, r)| r).collect();
    let Some(i) = o.value_ranges().position(|(k, _)| k == key) else {
        return Some(obj.to_string());
    };
    let open = obj.find('{')?;
    let cut = if i > 0 {
        // From the end of the previous value: its comma, this key and value.
        ranges[i - 1].end..ranges[i].end
    } else if let Some(next) = ranges.get(1) {
        // The first member: from its key to the next key.
        let first = key_start(obj, open + 1)?;
        let comma = obj[ranges[0].end..next.start].find(',')? + ranges[0].end;
        first..key_start(obj, comma + 1)?
    } else {
        // The only member: keep the braces.
        let close = obj.rfind('}')?;
        open + 1..close
    };
    Some(splice(obj, cut, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(cmd: &str) -> Value {
        json!({"command": cmd, "args": ["--name-max", "47"]})
    }

    fn set(key: &str, cmd: &str) -> Vec<(String, Value)> {
        vec![(key.to_string(), entry(cmd))]
    }

    #[test]
    fn appends_with_the_file_s_own_indentation_keeping_the_rest_byte_for_byte() {
        let original = "{\n    \"theme\": \"dark\",  \"n\": 1.0e3,\n    \"mcpServers\": {\n        \"github\": {\"command\": \"npx\", \"args\": [\"-y\", \"gh\"]}\n    },\n    \"tail\": [1,2]\n}\n";
        let out = edit(original, &set("stdioproxy", "/s"), &[]).expect("edit");
        assert_eq!(
            out,
            "{\n    \"theme\": \"dark\",  \"n\": 1.0e3,\n    \"mcpServers\": {\n        \"github\": {\"command\": \"npx\", \"args\": [\"-y\", \"gh\"]},\n        \"stdioproxy\": {\n            \"command\": \"/s\",\n            \"args\": [\n                \"--name-max\",\n                \"47\"\n            ]\n        }\n    },\n    \"tail\": [1,2]\n}\n"
        );
    }

    #[test]
    fn replaces_in_place_and_removes_with_the_comma() {
        let original = "{\n  \"mcpServers\": {\n    \"stdioproxy\": {\"command\": \"/old\"},\n    \"github\": {\"command\": \"npx\"},\n    \"x\": {\"command\": \"y\"}\n  }\n}\n";
        let out = edit(original, &set("github", "/s"), &["stdioproxy".into()]).expect("edit");
        assert_eq!(
            out,
            "{\n  \"mcpServers\": {\n    \"github\": {\n      \"command\": \"/s\",\n      \"args\": [\n        \"--name-max\",\n        \"47\"\n      ]\n    },\n    \"x\": {\"command\": \"y\"}\n  }\n}\n"
        );
        let last = edit(&out, &[], &["x".into()]).expect("edit");
        assert!(last.ends_with("      ]\n    }\n  }\n}\n"), "{last}");
        let only = edit("{\"mcpServers\": {\"a\": 1}}", &[], &["a".into()]).expect("edit");
        assert_eq!(only, "{\"mcpServers\": {}}");
    }

    #[test]
    fn missing_null_and_empty_servers_and_one_line_files() {
        let out = edit("{\n  \"a\": 1\n}\n", &set("s", "/s"), &[]).expect("edit");
        assert_eq!(
            out,
            "{\n  \"a\": 1,\n  \"mcpServers\": {\n    \"s\": {\n      \"command\": \"/s\",\n      \"args\": [\n        \"--name-max\",\n        \"47\"\n      ]\n    }\n  }\n}\n"
        );
        let null = edit("{\n  \"mcpServers\": null\n}\n", &set("s", "/s"), &[]).expect("edit");
        let v: Value = serde_json::from_str(&null).expect("json");
        assert_eq!(v["mcpServers"]["s"], entry("/s"));
        let empty = edit("{\n  \"mcpServers\": {}\n}\n", &set("s", "/s"), &[]).expect("edit");
        assert!(
            empty.starts_with("{\n  \"mcpServers\": {\n    \"s\": {\n      \"command\""),
            "{empty}"
        );
        assert!(empty.ends_with("    }\n  }\n}\n"), "{empty}");
        let compact = edit(
            r#"{"theme":"dark","mcpServers":{"x":{"command":"y"}}}"#,
            &set("s", "/s"),
            &[],
        )
        .expect("edit");
        assert_eq!(
            compact,
            r#"{"theme":"dark","mcpServers":{"x":{"command":"y"},"s":{"command":"/s","args":["--name-max","47"]}}}"#
        );
        // Nothing to learn the layout from.
        assert!(edit("{}", &set("s", "/s"), &[]).is_none());
        assert!(edit("[]", &set("s", "/s"), &[]).is_none());
    }
}
