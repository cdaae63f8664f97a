//! The gateway's floor plan, checked from its source tree (plain Rust, no
//! parser crate): every `use` and every `crate::…` / `super::…` / `self::…` /
//! `axum::…` path in `gateway/src/**/*.rs` (comments, strings and
//! `#[cfg(test)] mod` blocks left out) gives the import graph, by file.
//!
//! Rules (ARCHITECTURE.md, "Architecture invariants"):
//! - web: only `http/`, `soap/`, `main.rs` and `app.rs` import axum;
//! - use case: a use-case module (below) imports neither `crate::http`,
//!   `crate::soap` nor `crate::app` (use cases take the db, clock and config
//!   they need as arguments; `app` is where `AppState` is to live, so moving it
//!   there must not count as progress);
//! - db: `db` imports no use case;
//! - cycles: no circle of the module graph (by top-level module) contains a use case.
//!
//! Today's code breaks them. Each rule has an explicit list of the known
//! violations below; the test fails on any violation not listed AND on any
//! listed one that no longer exists, so each list only shrinks and stays true.
//! When you remove a violation, delete its line; the failure message prints
//! the current list to paste.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules that are use cases.
const USE_CASES: &[&str] = &[
    "orders",
    "catalog",
    "keys",
    "payments",
    "channels",
    "outbox",
    "retention",
    "events",
    "terminals",
    "platforms",
    "db",
];

/// Where axum may be imported.
fn is_web_file(file: &str) -> bool {
    file == "http.rs"
        || file.starts_with("http/")
        || file == "soap.rs"
        || file.starts_with("soap/")
        || file == "main.rs"
        || file == "app.rs"
        || file.starts_with("app/")
}

/// Modules a use case must not import.
const WEB_MODULES: &[&str] = &["http", "soap", "app"];

// Known violations, "file → import" (files relative to gateway/src). Issue 12's
// target: every one of them goes.

/// axum outside http/ and soap/: none since the pushes' HTTP parts (body
/// reading with its cap, the answer) and `GET /metrics` moved into `http/`;
/// the platforms take bytes and headers (the `http` crate's types) and
/// answer with status, content type and body. (`error.rs` takes its
/// `StatusCode` from the `http` crate; `Error`'s `IntoResponse` is in
/// `http/problem`.)
const KNOWN_WEB: &[&str] = &[];

/// Use cases that reach into the web layer: none since `AppState` moved to
/// `app.rs`, the use cases take what they need as arguments and the REST
/// handlers live in `http/`.
const KNOWN_USE_CASE: &[&str] = &[];

/// `db` importing use cases: none since the SQLite batcher moved to
/// `orders::Writer` (carried in `AppState`).
const KNOWN_DB: &[&str] = &[];

/// Circles of the top-level module graph that contain a use case (members
/// sorted, joined by ", "). The target: none.
const KNOWN_CYCLES: &[&str] = &[];

#[derive(Default)]
struct Known<'a> {
    web: &'a [&'a str],
    use_case: &'a [&'a str],
    db: &'a [&'a str],
    cycles: &'a [&'a str],
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    ColonColon,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Semi,
    Star,
    Pound,
    Other,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Rust source to tokens, enough to read paths: comments, string, char and
/// number literals and lifetimes become `Other` (or nothing).
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == Some('*') {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            out.push(Tok::Other);
            i = end;
        } else if ch == '"' || (ch == 'b' && at(i + 1) == Some('"')) {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Tok::Other);
        } else if ch == '\'' {
            if at(i + 1) == Some('\\') {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == Some('\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if ch == 'r' && at(i + 1) == Some('#') && at(i + 2).is_some_and(is_ident_start) {
            i += 2; // a raw identifier: read as the identifier
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok::Other);
        } else if ch == ':' && at(i + 1) == Some(':') {
            out.push(Tok::ColonColon);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::LBrace,
                '}' => Tok::RBrace,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '*' => Tok::Star,
                '#' => Tok::Pound,
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// If a raw string (`r"…"`, `r#"…"#`, `br"…"`) starts at `i`, where it ends.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

// ---------------------------------------------------------------- paths

/// Reads one use tree at `i` (after `use`), appending every full path.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match toks.get(*i) {
            Some(Tok::ColonColon) => *i += 1,
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::ColonColon) {
                    *i += 1;
                    continue;
                }
                if toks.get(*i) == Some(&Tok::Ident("as".into())) {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            Some(Tok::Star) => {
                *i += 1;
                out.push(path);
                return;
            }
            Some(Tok::LBrace) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        None => return,
                        Some(Tok::RBrace) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Comma) => *i += 1,
                        Some(_) => {
                            let before = *i;
                            use_tree(toks, i, path.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
            }
            _ => return,
        }
    }
}

/// Every path a file names (in `use` and in code), each with the module it
/// is named from (the file's module and any inline `mod`), leaving out
/// `#[cfg(test)] mod` blocks.
fn paths_of(src: &str, module: &[String]) -> Vec<(Vec<String>, Vec<String>)> {
    let toks = tokens(src);
    let mut out = Vec::new();
    let mut depth = 0usize;
    // (name, brace depth inside it, is a test module)
    let mut mods: Vec<(String, usize, bool)> = Vec::new();
    let mut cfg_test = false;
    let mut i = 0;
    let cfg_test_attr = [
        Tok::Pound,
        Tok::LBracket,
        Tok::Ident("cfg".into()),
        Tok::LParen,
        Tok::Ident("test".into()),
        Tok::RParen,
        Tok::RBracket,
    ];
    while i < toks.len() {
        let in_test = mods.iter().any(|m| m.2);
        let here = || {
            let mut m = module.to_vec();
            m.extend(mods.iter().map(|x| x.0.clone()));
            m
        };
        match &toks[i] {
            Tok::Pound if toks[i..].starts_with(&cfg_test_attr) => {
                cfg_test = true;
                i += cfg_test_attr.len();
                continue;
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::LBrace)) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    mods.push((name.clone(), depth, cfg_test));
                    cfg_test = false;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(k) if k == "use" => {
                i += 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut paths);
                if !in_test && !cfg_test {
                    let m = here();
                    out.extend(paths.into_iter().map(|p| (m.clone(), p)));
                }
                cfg_test = false;
                continue;
            }
            Tok::Ident(first)
                if toks.get(i + 1) == Some(&Tok::ColonColon)
                    && (i == 0 || toks[i - 1] != Tok::ColonColon) =>
            {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::ColonColon) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(s)) => {
                            path.push(s.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                if !in_test {
                    out.push((here(), path));
                }
                i = j;
                continue;
            }
            Tok::LBrace => {
                depth += 1;
                cfg_test = false;
            }
            Tok::RBrace => {
                if mods.last().is_some_and(|m| m.1 == depth) {
                    mods.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Semi => cfg_test = false,
            _ => {}
        }
        i += 1;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Axum,
    /// A module of the gateway (the longest file module the path names).
    Module(Vec<String>),
}

/// What `path`, named from module `from`, refers to: axum, a file module of
/// the gateway, or something else (`None`: std, other crates, local names).
fn resolve(
    path: &[String],
    from: &[String],
    modules: &BTreeSet<Vec<String>>,
    bin: bool,
) -> Option<Target> {
    let first = path.first()?.as_str();
    let absolute: Vec<String> = match first {
        "axum" => return Some(Target::Axum),
        "crate" => path[1..].to_vec(),
        "gateway" if bin => path[1..].to_vec(),
        "self" => from.iter().chain(&path[1..]).cloned().collect(),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = &from[..from.len().saturating_sub(ups)];
            base.iter().chain(&path[ups..]).cloned().collect()
        }
        _ => return None,
    };
    let absolute: Vec<String> = absolute.into_iter().filter(|s| s != "self").collect();
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|p| modules.contains(p))
        .map(Target::Module)
}

struct Graph {
    /// file (relative to src) → what it imports
    imports: BTreeMap<String, BTreeSet<Target>>,
}

fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).expect("under root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, p));
        }
    }
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(f, _)| module_of(f)).collect();
    let mut imports = BTreeMap::new();
    for (file, path) in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        let module = module_of(file);
        let bin = file == "main.rs";
        let mut set = BTreeSet::new();
        for (from, p) in paths_of(&text, &module) {
            if let Some(t) = resolve(&p, &from, &modules, bin) {
                match &t {
                    Target::Module(m) if m.is_empty() || *m == module => {}
                    _ => {
                        set.insert(t);
                    }
                }
            }
        }
        imports.insert(file.clone(), set);
    }
    Graph { imports }
}

fn top(file: &str) -> String {
    let m = module_of(file);
    m.first().cloned().unwrap_or_else(|| "lib".to_owned())
}

fn show(t: &Target) -> String {
    match t {
        Target::Axum => "axum".to_owned(),
        Target::Module(m) => format!("crate::{}", m[0]),
    }
}

/// The violations of each rule, as "file → import" lines.
fn violations(g: &Graph) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let (mut web, mut use_case, mut db) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (file, targets) in &g.imports {
        let t = top(file);
        for target in targets {
            let line = format!("{file} → {}", show(target));
            if *target == Target::Axum && !is_web_file(file) {
                web.insert(line.clone());
            }
            if let Target::Module(m) = target {
                let to = m[0].as_str();
                if USE_CASES.contains(&t.as_str()) && WEB_MODULES.contains(&to) {
                    use_case.insert(line.clone());
                }
                if t == "db" && to != "db" && USE_CASES.contains(&to) {
                    db.insert(line);
                }
            }
        }
    }
    (web, use_case, db)
}

/// The graph by top-level module (`orders/batch.rs` is `orders`).
fn top_edges(g: &Graph) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, targets) in &g.imports {
        let from = top(file);
        let set = edges.entry(from.clone()).or_default();
        for t in targets {
            if let Target::Module(m) = t
                && m[0] != from
            {
                set.insert(m[0].clone());
            }
        }
    }
    edges
}

/// Strongly connected components (Tarjan) of the top-level module graph
/// with more than one member and at least one use case.
fn use_case_cycles(g: &Graph) -> BTreeSet<String> {
    let edges = top_edges(g);
    let nodes: Vec<String> = edges.keys().cloned().collect();
    let index_of: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges[n]
                .iter()
                .filter_map(|m| index_of.get(m.as_str()).copied())
                .collect()
        })
        .collect();
    struct T<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for k in 0..t.adj[v].len() {
            let w = t.adj[v][k];
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(comp);
        }
    }
    let n = nodes.len();
    let mut t = T {
        adj: &adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut names: Vec<&str> = c.iter().map(|&i| nodes[i].as_str()).collect();
            names.sort();
            names
        })
        .filter(|names| names.iter().any(|n| USE_CASES.contains(n)))
        .map(|names| names.join(", "))
        .collect()
}

/// Compares what is found with what is known: one message per new and per
/// vanished entry, and the current list to paste when anything differs.
fn compare(
    rule: &str,
    list: &str,
    found: &BTreeSet<String>,
    known: &[&str],
    out: &mut Vec<String>,
) {
    let known: BTreeSet<String> = known.iter().map(|s| (*s).to_owned()).collect();
    let mut changed = false;
    for v in found.difference(&known) {
        out.push(format!("new {rule} violation: {v}"));
        changed = true;
    }
    for v in known.difference(found) {
        out.push(format!(
            "listed {rule} violation no longer exists (good — delete it from {list}): {v}"
        ));
        changed = true;
    }
    if changed {
        let mut now = format!("{list} as the code is now:");
        for v in found {
            now.push_str(&format!("\n    {v:?},"));
        }
        out.push(now);
    }
}

/// Every failure of the rules against the known lists (empty: they hold).
fn check(src: &Path, known: &Known) -> Vec<String> {
    let g = graph(src);
    let (web, use_case, db) = violations(&g);
    let cycles = use_case_cycles(&g);
    let mut out = Vec::new();
    compare(
        "web (axum outside http/ soap/)",
        "KNOWN_WEB",
        &web,
        known.web,
        &mut out,
    );
    compare(
        "use-case (imports crate::http/soap/app)",
        "KNOWN_USE_CASE",
        &use_case,
        known.use_case,
        &mut out,
    );
    compare(
        "db (imports a use case)",
        "KNOWN_DB",
        &db,
        known.db,
        &mut out,
    );
    compare("cycle", "KNOWN_CYCLES", &cycles, known.cycles, &mut out);
    out
}

fn gateway_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src")
}

#[test]
fn the_gateway_holds_its_floor_plan_apart_from_the_listed_violations() {
    let src = gateway_src();
    let g = graph(&src);
    // The reader sees the graph (a reader broken into seeing nothing passes
    // every rule): the shared state holds the database, and there are many
    // edges.
    let app = g.imports.get("app.rs").expect("gateway/src/app.rs read");
    let edges: usize = g.imports.values().map(BTreeSet::len).sum();
    assert!(
        app.contains(&Target::Module(vec!["db".into()])) && edges > 50,
        "the import graph looks empty ({edges} edges): app.rs → {app:?}"
    );
    println!("use-case cycles of gateway/src:");
    let edges = top_edges(&g);
    for c in use_case_cycles(&g) {
        println!("  {c}");
        let members: BTreeSet<&str> = c.split(", ").collect();
        for m in &members {
            let to: Vec<&str> = edges[*m]
                .iter()
                .map(String::as_str)
                .filter(|t| members.contains(t))
                .collect();
            println!("    {m} → {}", to.join(", "));
        }
    }
    let (web, use_case, db) = violations(&g);
    println!(
        "violations: {} web, {} use-case, {} db",
        web.len(),
        use_case.len(),
        db.len()
    );
    let failures = check(
        &src,
        &Known {
            web: KNOWN_WEB,
            use_case: KNOWN_USE_CASE,
            db: KNOWN_DB,
            cycles: KNOWN_CYCLES,
        },
    );
    assert!(
        failures.is_empty(),
        "the floor plan (ARCHITECTURE.md) and tests/tests/architecture.rs disagree:\n{}",
        failures.join("\n")
    );
}

// ------------------------------------------------------- the checker itself

fn fake_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

const FAKE: &[(&str, &str)] = &[
    (
        "lib.rs",
        "pub mod db; pub mod http; pub mod orders; pub mod catalog;",
    ),
    (
        "http.rs",
        "use axum::Router;\nuse crate::{catalog, orders::{self, create}};\npub struct AppState;",
    ),
    (
        "http/extract.rs",
        "use super::AppState; use axum::extract::State;",
    ),
    // A use case with a handler: axum and AppState.
    (
        "orders.rs",
        "mod batch;\nuse crate::http::AppState;\npub async fn h(s: axum::extract::State<AppState>) {}",
    ),
    ("orders/batch.rs", "use super::create; pub struct Batcher;"),
    (
        "db.rs",
        "pub struct Db { b: crate::orders::batch::Batcher }",
    ),
    // Mentions that are not imports: comments, strings, test code.
    (
        "catalog.rs",
        "// use axum::Router;\n/* crate::http::AppState */\n\
         const S: &str = \"crate::http::x\"; const R: &str = r#\"axum::x\"#;\n\
         fn f<'a>(c: &'a str) -> char { 'x' }\n\
         #[cfg(test)]\nmod tests { use crate::http::AppState; use axum::Router; }",
    ),
];

#[test]
fn the_checker_finds_each_kind_of_violation_in_a_small_tree() {
    let dir = fake_tree(FAKE);
    let failures = check(dir.path(), &Known::default());
    let want = [
        "new web (axum outside http/ soap/) violation: orders.rs → axum",
        "new use-case (imports crate::http/soap/app) violation: orders.rs → crate::http",
        "new db (imports a use case) violation: db.rs → crate::orders",
        "new cycle violation: http, orders",
    ];
    for w in want {
        assert!(
            failures.iter().any(|f| f == w),
            "{w:?} not in {failures:#?}"
        );
    }
    // catalog.rs only mentions them in comments, strings and test code.
    assert!(
        !failures.iter().any(|f| f.contains("catalog.rs")),
        "{failures:#?}"
    );
    // With exactly these listed, the tree passes.
    let ok = check(
        dir.path(),
        &Known {
            web: &["orders.rs → axum"],
            use_case: &["orders.rs → crate::http"],
            db: &["db.rs → crate::orders"],
            cycles: &["http, orders"],
        },
    );
    assert!(ok.is_empty(), "{ok:#?}");
}

#[test]
fn a_listed_violation_that_is_gone_fails_too() {
    let dir = fake_tree(FAKE);
    let failures = check(
        dir.path(),
        &Known {
            web: &["orders.rs → axum", "catalog.rs → axum"],
            use_case: &["orders.rs → crate::http"],
            db: &["db.rs → crate::orders"],
            cycles: &["http, orders"],
        },
    );
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("listed web") && f.ends_with("catalog.rs → axum")),
        "{failures:#?}"
    );
}

// ------------------------------------------------- rules read from the text

/// A source file as the content rules read it: whole-line comments and
/// `#[cfg(test)] mod … { … }` blocks left out (string literals kept: SQL is
/// in them).
fn code_text(src: &str) -> String {
    let kept: Vec<&str> = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let text = kept.join("\n");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if trimmed.starts_with("mod ")
            && let Some(open) = trimmed.find('{')
        {
            let mut depth = 0usize;
            let mut end = trimmed.len();
            for (i, c) in trimmed[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &trimmed[end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Every `.rs` file of gateway/src (relative path) with its code text.
fn code_files(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, src, &mut files);
    files
        .into_iter()
        .map(|(rel, p)| {
            let text = std::fs::read_to_string(&p).expect("read source");
            (rel, code_text(&text))
        })
        .collect()
}

/// Whether `text` holds `word` as a whole identifier.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let id = |c: Option<char>| c.is_some_and(|c| c == '_' || c.is_alphanumeric());
        !id(before) && !id(after)
    })
}

/// Files that hold SQL though they are the web layer (they may only shrink).
const KNOWN_SQL_IN_WEB: &[&str] = &[];

/// The one file that decides and builds the rows of a new order (`orders`,
/// `order_lines`): the plan; the direct path and the SQLite batch execute it.
const ORDER_WRITER: &str = "orders/plan.rs";

/// The content rules of the floor plan (ARCHITECTURE.md): SQL only in use
/// cases; `payment_status` written by one function; no floats or rounding
/// in the gateway (money is parsed and rounded in proto); no code compares
/// error-code strings; the outbox names no platform; orders inserted in one
/// place.
fn content_violations(files: &[(String, String)]) -> BTreeMap<&'static str, Vec<String>> {
    let mut v: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let web = |f: &str| {
        f == "http.rs"
            || f.starts_with("http/")
            || f == "soap.rs"
            || f.starts_with("soap/")
            || f == "app.rs"
            || f == "main.rs"
            || f == "config.rs"
    };
    for (f, text) in files {
        let mut add = |rule: &'static str| v.entry(rule).or_default().push(f.clone());
        if web(f) && (text.contains("sqlx::query") || text.contains("query_as(")) {
            add("sql_in_web");
        }
        let writes_payment_status = text.contains("SET payment_status")
            || text.contains(", payment_status =")
            || text.contains(",payment_status =");
        if writes_payment_status && f != "payments/store.rs" {
            add("payment_status_written");
        }
        if [
            "f32",
            "f64",
            "div_euclid",
            "rem_euclid",
            "round",
            "ceil",
            "floor",
            "trunc",
        ]
        .iter()
        .any(|w| has_word(text, w) && !(f == "outbox.rs" && *w == "round"))
        {
            add("float_or_rounding");
        }
        if [
            "code == \"",
            "code != \"",
            "as_str() == \"",
            "as_str() != \"",
        ]
        .iter()
        .any(|p| text.contains(p))
        {
            add("code_string_compared");
        }
        if f == "outbox.rs" && text.to_ascii_lowercase().contains("meituan") {
            add("outbox_names_a_platform");
        }
        if text.contains("INSERT INTO orders ")
            || text.contains("INSERT INTO orders(")
            || text.contains("INSERT INTO order_lines")
            || text.contains("name: \"orders\"")
            || text.contains("name: \"order_lines\"")
        {
            add("order_writer");
        }
    }
    v
}

#[test]
fn the_gateway_holds_its_content_rules() {
    let files = code_files(&gateway_src());
    assert!(
        files
            .iter()
            .any(|(f, t)| f == "payments/store.rs" && t.contains("SET payment_status")),
        "the reader sees no source (payments/store.rs must hold the one payment_status write)"
    );
    let v = content_violations(&files);
    let got = |rule: &str| v.get(rule).cloned().unwrap_or_default();
    let mut failures = Vec::new();
    for rule in [
        "payment_status_written",
        "float_or_rounding",
        "code_string_compared",
        "outbox_names_a_platform",
    ] {
        if !got(rule).is_empty() {
            failures.push(format!("{rule}: {:?}", got(rule)));
        }
    }
    let mut listed = |rule: &str, known: &[&str], name: &str| {
        let mut now = got(rule);
        now.sort();
        let mut known: Vec<String> = known.iter().map(|s| (*s).to_owned()).collect();
        known.sort();
        if now != known {
            failures.push(format!(
                "{rule}: the code has {now:?}, {name} lists {known:?}"
            ));
        }
    };
    listed("sql_in_web", KNOWN_SQL_IN_WEB, "KNOWN_SQL_IN_WEB");
    listed("order_writer", &[ORDER_WRITER], "ORDER_WRITER");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_content_rules_catch_what_they_name() {
    let files: Vec<(String, String)> = [
        ("http/x.rs", "let r = sqlx::query(\"SELECT 1\");"),
        ("payments/store.rs", "\"UPDATE orders SET payment_status = $1\""),
        ("channels.rs", "\"UPDATE orders SET status = $1, payment_status = $2\""),
        ("orders.rs", "let x = a as f64; \"INSERT INTO orders (id)\""),
        ("keys.rs", "if e.code == \"illegal_transition\" {}"),
        ("outbox.rs", "crate::channels::meituan::call(); self.round()"),
        ("catalog.rs", "// a comment with f64 and sqlx::query\nfn ok() {}\n#[cfg(test)]\nmod tests { fn t() { let _ = 1.0_f64.round(); } }"),
    ]
    .iter()
    .map(|(f, t)| ((*f).to_owned(), code_text(t)))
    .collect();
    let v = content_violations(&files);
    let of = |r: &str| v.get(r).cloned().unwrap_or_default();
    assert_eq!(of("sql_in_web"), ["http/x.rs"]);
    assert_eq!(of("payment_status_written"), ["channels.rs"]);
    assert_eq!(of("float_or_rounding"), ["orders.rs"]);
    assert_eq!(of("code_string_compared"), ["keys.rs"]);
    assert_eq!(of("outbox_names_a_platform"), ["outbox.rs"]);
    assert_eq!(of("order_writer"), ["orders.rs"]);
    assert!(!has_word("rounds", "round") && has_word("x.round()", "round"));
}
