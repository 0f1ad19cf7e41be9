//! Ranking tool definitions for `--tools search` sessions (BM25).
//!
//! A session in search mode sees two meta-tools instead of the whole
//! catalog; `search_tools` ranks the catalog's tools against a query. Names
//! carry most of the meaning (`create_issue`, `getFileContents`), so they
//! are split on `_`, `-`, `.`, `/` and camelCase, and weigh more than
//! parameter names, which weigh more than descriptions. Ranking is Okapi
//! BM25 over those weighted term counts, with a light plural folding
//! (`files` finds `file`).
//!
//! The index is built once per catalog snapshot (the catalog holds it, so a
//! catalog change rebuilds it) and covers every tool; each query passes
//! which documents the asking session may see, so sessions with different
//! views share one index. A query is a scan of the postings of its few
//! terms plus a partial sort: far below a millisecond for 1,000 tools.

use std::collections::HashMap;

use serde_json::Value;

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;
/// Weight of a term in the tool's name (and its server's name).
const NAME_WEIGHT: f32 = 3.0;
/// Weight of a term in a parameter name.
const PARAM_WEIGHT: f32 = 1.5;
/// Weight of a term in the description (and parameter descriptions).
const TEXT_WEIGHT: f32 = 1.0;

/// Words too common in tool descriptions to tell tools apart.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "that", "the", "this", "to", "with",
];

/// What is indexed of one tool.
#[derive(Debug, Default, Clone)]
pub struct ToolDoc {
    /// The tool's name (as its server knows it).
    pub name: String,
    /// The server's name.
    pub server: String,
    /// The description.
    pub description: String,
    /// Parameter names (`inputSchema.properties` keys).
    pub params: Vec<String>,
    /// Parameter descriptions.
    pub param_text: Vec<String>,
}

impl ToolDoc {
    /// The document for a tool definition (JSON object) of `server`.
    pub fn from_definition(server: &str, name: &str, def: &Value) -> Self {
        let mut doc = ToolDoc {
            name: name.to_string(),
            server: server.to_string(),
            description: def["description"].as_str().unwrap_or_default().to_string(),
            ..Default::default()
        };
        if let Some(props) = def
            .pointer("/inputSchema/properties")
            .and_then(Value::as_object)
        {
            for (k, v) in props {
                doc.params.push(k.clone());
                if let Some(d) = v.get("description").and_then(Value::as_str) {
                    doc.param_text.push(d.to_string());
                }
            }
        }
        doc
    }
}

/// A BM25 index over tool documents, addressed by their position in the
/// list it was built from.
#[derive(Debug, Default)]
pub struct SearchIndex {
    /// Weighted length of each document.
    lengths: Vec<f32>,
    avg_len: f32,
    /// Term -> (document, weighted count).
    postings: HashMap<String, Vec<(u32, f32)>>,
}

impl SearchIndex {
    /// Indexes `docs`; a document's position is its id in results.
    pub fn build(docs: impl IntoIterator<Item = ToolDoc>) -> Self {
        let mut index = SearchIndex::default();
        for (id, doc) in docs.into_iter().enumerate() {
            let mut counts: HashMap<String, f32> = HashMap::new();
            let mut add = |text: &str, weight: f32| {
                for t in tokens(text) {
                    *counts.entry(t).or_default() += weight;
                }
            };
            add(&doc.name, NAME_WEIGHT);
            add(&doc.server, NAME_WEIGHT);
            add(&doc.description, TEXT_WEIGHT);
            for p in &doc.params {
                add(p, PARAM_WEIGHT);
            }
            for p in &doc.param_text {
                add(p, TEXT_WEIGHT);
            }
            index.lengths.push(counts.values().sum());
            for (term, count) in counts {
                index
                    .postings
                    .entry(term)
                    .or_default()
                    .push((id as u32, count));
            }
        }
        let n = index.lengths.len().max(1) as f32;
        index.avg_len = (index.lengths.iter().sum::<f32>() / n).max(1.0);
        index
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The best `limit` documents for `query` among those `allowed` accepts,
    /// best first, with their scores (only documents matching some term).
    /// Ties keep catalog order.
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        allowed: impl Fn(usize) -> bool,
    ) -> Vec<(usize, f32)> {
        let mut terms = tokens(query);
        terms.sort();
        terms.dedup();
        let n = self.lengths.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for term in &terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let df = postings.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in postings {
                let len = self.lengths[doc as usize];
                let norm = K1 * (1.0 - B + B * len / self.avg_len);
                *scores.entry(doc).or_default() += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let mut ranked: Vec<(usize, f32)> = scores
            .into_iter()
            .map(|(d, s)| (d as usize, s))
            .filter(|&(d, _)| allowed(d))
            .collect();
        let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if ranked.len() > limit && limit > 0 {
            ranked.select_nth_unstable_by(limit - 1, by_score);
            ranked.truncate(limit);
        }
        ranked.sort_by(by_score);
        ranked.truncate(limit);
        ranked
    }
}

/// The terms of a text: split on anything but letters and digits and at
/// camelCase and letter/digit boundaries, lower-cased, stopwords dropped,
/// plurals folded.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev: Option<char> = None;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush(&mut word, &mut out);
            prev = None;
            continue;
        }
        if let Some(p) = prev {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = (p.is_lowercase() && c.is_uppercase())
                // "HTTPServer": a new word starts at the S.
                || (p.is_uppercase() && c.is_uppercase() && next_lower)
                || (p.is_alphabetic() && c.is_ascii_digit())
                || (p.is_ascii_digit() && c.is_alphabetic());
            if boundary {
                flush(&mut word, &mut out);
            }
        }
        word.extend(c.to_lowercase());
        prev = Some(c);
    }
    flush(&mut word, &mut out);
    out
}

fn flush(word: &mut String, out: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    let w = std::mem::take(word);
    if STOPWORDS.contains(&w.as_str()) {
        return;
    }
    out.push(fold_plural(w));
}

/// `files` -> `file`, `queries` -> `query`; short words and `-ss` stay.
fn fold_plural(w: String) -> String {
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        return w[..w.len() - 1].to_string();
    }
    w
}

/// Up to `k` of `candidates` closest to `name`, closest first: edit
/// distance, ignoring case, with a bonus for sharing words (so `get_sum`
/// finds `everything__get-sum`). For error messages about unknown names.
pub fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    k: usize,
) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let words = tokens(name);
    let mut scored: Vec<(usize, &'a str)> = candidates
        .into_iter()
        .map(|c| {
            let cl = c.to_lowercase();
            // Containment is as close as it gets short of equality.
            let mut d = if cl.contains(&lower) || lower.contains(&cl) {
                cl.len().abs_diff(lower.len()).min(2)
            } else {
                levenshtein(&lower, &cl)
            };
            let shared = tokens(c).iter().filter(|t| words.contains(t)).count();
            d = d.saturating_sub(shared * 3);
            (d, c)
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(k).map(|(_, c)| c).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str, description: &str, params: &[&str]) -> ToolDoc {
        ToolDoc {
            name: name.into(),
            server: "s".into(),
            description: description.into(),
            params: params.iter().map(|p| p.to_string()).collect(),
            param_text: vec![],
        }
    }

    #[test]
    fn tokens_split_names_every_way() {
        assert_eq!(tokens("create_issue"), ["create", "issue"]);
        assert_eq!(tokens("get-file-contents"), ["get", "file", "content"]);
        assert_eq!(tokens("getFileContents"), ["get", "file", "content"]);
        assert_eq!(tokens("HTTPServer2x"), ["http", "server", "2", "x"]);
        assert_eq!(
            tokens("Read the queries, of files"),
            ["read", "query", "file"]
        );
        assert_eq!(tokens("class status"), ["class", "status"]);
        assert!(tokens("").is_empty());
    }

    #[test]
    fn names_outrank_descriptions_and_filters_apply() {
        let index = SearchIndex::build([
            doc("echo", "Echoes back the input", &["message"]),
            doc("get_sum", "Adds two numbers", &["a", "b"]),
            doc("print", "Writes a message, like echo does", &["text"]),
            doc(
                "create_issue",
                "Open an issue in a GitHub repository",
                &["repo", "title"],
            ),
        ]);
        assert_eq!(index.len(), 4);
        let r = index.search("echo", 10, |_| true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 2]);
        assert!(r[0].1 > r[1].1);
        assert_eq!(index.search("echo", 10, |d| d != 0)[0].0, 2);
        assert_eq!(index.search("github issues", 1, |_| true)[0].0, 3);
        assert_eq!(index.search("sum of numbers", 5, |_| true)[0].0, 1);
        // Parameter names count.
        assert_eq!(index.search("repo", 5, |_| true)[0].0, 3);
        assert!(index.search("zebra-quux", 5, |_| true).is_empty());
        assert!(index.search("echo", 0, |_| true).is_empty());
    }

    #[test]
    fn documents_come_from_definitions() {
        let def = json!({
            "name": "read", "description": "Read a file",
            "inputSchema": {"type": "object", "properties": {
                "filePath": {"type": "string", "description": "absolute location"}}}
        });
        let d = ToolDoc::from_definition("fs", "read", &def);
        assert_eq!(d.params, ["filePath"]);
        let index = SearchIndex::build([d, doc("other", "", &[])]);
        assert_eq!(index.search("path", 5, |_| true)[0].0, 0);
        assert_eq!(index.search("location", 5, |_| true)[0].0, 0);
        assert_eq!(
            index.search("fs", 5, |_| true)[0].0,
            0,
            "server names count"
        );
    }

    #[test]
    fn closest_names_for_typos_and_missing_prefixes() {
        let names = [
            "everything__echo",
            "everything__get-sum",
            "fixture__echo",
            "mem__store",
        ];
        assert_eq!(closest("everything__ecko", names, 1), ["everything__echo"]);
        assert_eq!(closest("get_sum", names, 1), ["everything__get-sum"]);
        let echo = closest("echo", names, 2);
        assert!(
            echo.contains(&"fixture__echo") && echo.contains(&"everything__echo"),
            "{echo:?}"
        );
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
