//! The crate's shape, checked from its own sources: no import cycle through
//! more than 3 files, no file in src/ over 700 lines, and every module named
//! in docs/ARCHITECTURE.md. It keeps the house from growing back into one
//! knot: a change that closes a longer circle, grows a file past the limit
//! or adds a module the map does not name fails here, naming what to fix.
//!
//! The graph: one node per file under src/ (binaries excluded), an edge from
//! a file to each file that defines what it names through `crate::` or
//! `super::` paths (in `use` items and in code; comments and `#[cfg(test)]`
//! modules ignored). A name re-exported by a module (`pub use child::Name`)
//! resolves to the child that defines it, so a package's `mod.rs` re-exports
//! are not edges back into the package.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest import cycle allowed, in files.
const MAX_CYCLE: usize = 3;
/// Longest file allowed in src/, in lines.
const MAX_LINES: usize = 700;
/// One source file: its module path (`["session", "route"]`) and its text.
struct File {
    module: Vec<String>,
    text: String,
}

/// This crate's src/, or the one `STDIOPROXY_ARCH_SRC` names (to check
/// another tree, e.g. a branch before it merges).
fn src_dir() -> PathBuf {
    match std::env::var_os("STDIOPROXY_ARCH_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/session/route.rs` -> `session::route`; `src/wire/mod.rs` -> `wire`;
/// `src/lib.rs` -> the root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without comments and without its test module.
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts at `crate::` or `super::` in `code`, expanded
/// through `{...}` groups: each as its segments, `crate`/`super` included.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != ':';
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (paths, end) = parse_path(&bytes, i, Vec::new());
            out.extend(paths);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` from `at`, after `prefix`; returns the expanded
/// paths and where parsing stopped.
fn parse_path(s: &[char], mut at: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut segs = prefix;
    loop {
        while at < s.len() && s[at].is_whitespace() {
            at += 1;
        }
        if at < s.len() && s[at] == '{' {
            let mut out = Vec::new();
            at += 1;
            loop {
                while at < s.len() && (s[at].is_whitespace() || s[at] == ',') {
                    at += 1;
                }
                if at >= s.len() || s[at] == '}' {
                    return (out, at + 1);
                }
                let (paths, end) = parse_path(s, at, segs.clone());
                out.extend(paths);
                if end <= at {
                    return (out, at + 1);
                }
                at = end;
            }
        }
        let start = at;
        while at < s.len() && is_ident(s[at]) {
            at += 1;
        }
        if at == start {
            return (vec![segs], at);
        }
        segs.push(s[start..at].iter().collect());
        if s.get(at) == Some(&':') && s.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            // Skip an `as alias`.
            return (vec![segs], at);
        }
    }
}

/// `pub use child::{A, B}` re-exports of a module: name -> child module.
fn reexports(code: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for item in code.split(';') {
        let item = item.trim();
        let Some(rest) = item.strip_prefix("pub use ") else {
            continue;
        };
        let chars: Vec<char> = rest.chars().collect();
        let (paths, _) = parse_path(&chars, 0, Vec::new());
        for p in paths {
            if p.len() >= 2 && p[0] != "crate" && p[0] != "super" && p[0] != "self" {
                map.insert(p[p.len() - 1].clone(), p[0].clone());
            }
        }
    }
    map
}

struct Crate {
    files: BTreeMap<String, File>,
    by_module: BTreeMap<Vec<String>, String>,
    reexports: BTreeMap<Vec<String>, BTreeMap<String, String>>,
}

impl Crate {
    fn load() -> Self {
        let src = src_dir();
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let mut files = BTreeMap::new();
        let mut by_module = BTreeMap::new();
        let mut reexports_map = BTreeMap::new();
        for p in paths {
            let rel = p.strip_prefix(&src).expect("under src").to_path_buf();
            let name = rel.display().to_string();
            let text = std::fs::read_to_string(&p).expect("read source");
            let module = module_of(&rel);
            // A test module in a file of its own (`#[cfg(test)] mod tests;`)
            // is not part of the crate's shape.
            if module.last().is_some_and(|m| m == "tests") {
                continue;
            }
            reexports_map.insert(module.clone(), reexports(&code_of(&text)));
            by_module.insert(module.clone(), name.clone());
            files.insert(name, File { module, text });
        }
        Self {
            files,
            by_module,
            reexports: reexports_map,
        }
    }

    /// The file that defines what `path` names, seen from module `from`.
    fn resolve(&self, from: &[String], path: &[String]) -> Option<String> {
        let mut module: Vec<String> = Vec::new();
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => rest = &rest[1..],
            Some("super") => {
                module = from.to_vec();
                while rest.first().map(String::as_str) == Some("super") {
                    module.pop()?;
                    rest = &rest[1..];
                }
            }
            _ => return None,
        }
        for seg in rest {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.by_module.contains_key(&child) {
                module = child;
                continue;
            }
            // An item: defined here, or re-exported from a child.
            if let Some(owner) = self.reexports.get(&module).and_then(|r| r.get(seg)) {
                let mut child = module.clone();
                child.push(owner.clone());
                if self.by_module.contains_key(&child) {
                    module = child;
                }
            }
            break;
        }
        self.by_module.get(&module).cloned()
    }

    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph = BTreeMap::new();
        for (name, f) in &self.files {
            let mut to = BTreeSet::new();
            for p in paths_in(&code_of(&f.text)) {
                if let Some(target) = self.resolve(&f.module, &p) {
                    if &target != name {
                        to.insert(target);
                    }
                }
            }
            graph.insert(name.clone(), to);
        }
        graph
    }
}

/// The longest simple cycle through `start` whose other files all sort
/// after it (so each cycle is found once), up to `limit + 1` files.
fn long_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
    limit: usize,
) -> Option<Vec<String>> {
    let last = path.last().expect("non-empty").clone();
    for next in &graph[&last] {
        if next == start && path.len() > limit {
            return Some(path.clone());
        }
        if next.as_str() > start && !path.contains(next) && path.len() <= limit {
            path.push(next.clone());
            if let Some(c) = long_cycle(graph, start, path, limit) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_import_cycle_spans_more_than_three_files() {
    let krate = Crate::load();
    let graph = krate.graph();
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the import graph looks empty: the parser is broken"
    );
    let mut found = Vec::new();
    for start in graph.keys() {
        if let Some(c) = long_cycle(&graph, start, &mut vec![start.clone()], MAX_CYCLE) {
            found.push(format!("{} -> {}", c.join(" -> "), c[0]));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles through more than {MAX_CYCLE} files (break them by moving what both sides need into a lower module):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_graph_sees_known_edges() {
    // Guards the parser: these imports exist, so the graph must have them.
    let graph = Crate::load().graph();
    for (from, to) in [
        ("session/route.rs", "wire/connection.rs"),
        ("session/route.rs", "session/mod.rs"),
        ("wire/connection.rs", "wire/context.rs"),
        ("upstream/lifecycle.rs", "wire/connection.rs"),
        ("daemon.rs", "listener.rs"),
        ("reload.rs", "builtin.rs"),
    ] {
        assert!(
            graph[from].contains(to),
            "{from} should import {to}; it imports {:?}",
            graph[from]
        );
    }
}

#[test]
fn no_source_file_is_over_700_lines() {
    let krate = Crate::load();
    let mut over = Vec::new();
    let mut all = Vec::new();
    rust_files(&src_dir(), &mut all);
    all.extend(
        std::fs::read_dir(src_dir().join("bin"))
            .expect("src/bin")
            .map(|e| e.expect("entry").path()),
    );
    for p in all {
        let lines = std::fs::read_to_string(&p).expect("read").lines().count();
        if lines > MAX_LINES {
            over.push(format!("{} ({lines} lines)", p.display()));
        }
    }
    assert!(!krate.files.is_empty());
    assert!(
        over.is_empty(),
        "files in src/ over {MAX_LINES} lines (split them by responsibility):\n{}",
        over.join("\n")
    );
}

/// True when `doc` names module `path` (`["a", "b"]`): as `` `a::b` ``
/// anywhere, or in a line that names its parent (`` `a` ``) and, in
/// backticks, the module itself (`` `b` `` or `` `…::b` ``): a package's row
/// may list its files.
fn doc_names(doc: &str, path: &[String]) -> bool {
    let full = path.join("::");
    let leaf = &path[path.len() - 1];
    let parent = path[..path.len() - 1].join("::");
    doc.lines().any(|line| {
        let ticked: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        ticked.contains(&full.as_str())
            || (!parent.is_empty()
                && ticked.contains(&parent.as_str())
                && ticked
                    .iter()
                    .any(|t| *t == leaf || t.ends_with(&format!("::{leaf}"))))
    })
}

#[test]
fn architecture_md_names_every_module() {
    let doc = std::fs::read_to_string(src_dir().join("../docs/ARCHITECTURE.md"))
        .expect("read docs/ARCHITECTURE.md");
    let krate = Crate::load();
    let missing: Vec<String> = krate
        .files
        .values()
        .filter(|f| !f.module.is_empty() && !doc_names(&doc, &f.module))
        .map(|f| f.module.join("::"))
        .collect();
    assert!(
        missing.is_empty(),
        "modules docs/ARCHITECTURE.md does not name (add a row to its module map, or name the file in its package's row): {missing:?}"
    );
}
