//! The layout keeps its shape: imports between brygga's modules form no circle, and no source
//! file grows past what a reader can hold (600 lines). Both are ratchets while the layout is
//! being reworked: what is listed below may only shrink, and anything new fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a source file may have.
const MAX_LINES: usize = 600;

/// Files over [`MAX_LINES`] not yet split, with the length they may not exceed.
const LONG_FILES: &[(&str, usize)] = &[
    ("src/access/crl_fetch.rs", 611),
    ("src/access/trust.rs", 702),
    ("src/cli/dpo.rs", 799),
    ("src/devkit/bench.rs", 677),
    ("src/devkit/demo.rs", 899),
    ("src/devkit/sim_af.rs", 1092),
    ("src/gateway/exchange.rs", 997),
    ("src/gateway/server.rs", 914),
    ("src/model/ident.rs", 690),
    ("src/model/msg.rs", 666),
    ("src/ops/metrics.rs", 1055),
    ("src/store/audit.rs", 2599),
];

/// Circles of modules that import each other, not yet broken (each as its sorted members).
const KNOWN_CIRCLES: &[&[&str]] = &[&["access::crl", "access::crl_fetch", "access::trust"]];

/// The layers, lowest first: a module may use its own layer and those below it. `cli` and
/// `devkit` are both at the top; `fuzzing` drives everything.
const LAYERS: &[&[&str]] = &[
    &["model"],
    &["error"],
    &["config"],
    &["store"],
    &["contract"],
    &["access"],
    &["ops"],
    &["gateway"],
    &["cli", "devkit"],
    &["fuzzing"],
];

/// Imports from a lower layer up into a higher one, not yet turned around (`from -> to`).
const KNOWN_UPWARD: &[&str] = &[
    "config -> access::identity",
    "config -> access::pseudo",
    "config -> access::tls",
    "config::check -> access::crl",
    "config::check -> access::pseudo",
    "config::check -> access::trust",
    "config::clients -> access::identity",
    "config::clients -> access::trust",
    "config::example_keys -> access::pseudo",
    "config::runtime -> access::pseudo",
    "config::runtime -> access::trust",
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A file's module path in the library: `src/codec/xml.rs` → `codec::xml`,
/// `src/codec/mod.rs` → `codec`; `None` for the binary's and the library's roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let parts = match parts.last().map(String::as_str) {
        Some("mod") => &parts[..parts.len() - 1],
        Some("lib" | "main") if parts.len() == 1 => return None,
        _ => &parts[..],
    };
    Some(parts.join("::"))
}

/// The code of a file without its comments and its unit tests (`#[cfg(test)]` to the end:
/// brygga keeps them last), which may reach anywhere.
fn code_of(text: &str) -> String {
    let code = text.find("#[cfg(test)]").map_or(text, |i| &text[..i]);
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a text names after `crate::`, with `crate::{a, b::c}` groups opened:
/// `["a", "b::c"]`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_paths(&group[..closing_brace(group)]));
        } else {
            let prefix = path_prefix(rest);
            let after = rest[prefix.len()..].trim_start_matches(':');
            match after.strip_prefix('{') {
                // `crate::a::{x, y}`: the group under its prefix.
                Some(group) if rest[prefix.len()..].starts_with("::") => {
                    let end = closing_brace(group);
                    out.extend(group_paths(&format!("{prefix}::{{{}}}", &group[..end])));
                }
                _ => out.push(prefix),
            }
        }
    }
    out
}

/// Where the group that `text` opens (just after its `{`) closes.
fn closing_brace(text: &str) -> usize {
    let mut depth = 1;
    text.char_indices()
        .find(|&(_, c)| {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            depth == 0
        })
        .map_or(text.len(), |(j, _)| j)
}

/// The leading path (`a::b::c`) of `s`, up to the first character that is not part of one.
fn path_prefix(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':').to_owned()
}

/// Every path a `{…}` group names, nested groups opened (`a::{x, y}, b` → `a::x`, `a::y`,
/// `b`), so that `use crate::gateway::{events, exchange}` counts as importing both.
fn group_paths(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    let mut out = Vec::new();
    for item in items.into_iter().map(str::trim) {
        match item.split_once("::{") {
            Some((prefix, inner)) => {
                let inner = inner.strip_suffix('}').unwrap_or(inner);
                for p in group_paths(inner) {
                    // `self` names the prefix itself.
                    out.push(match p.as_str() {
                        "self" => prefix.to_owned(),
                        _ => format!("{prefix}::{p}"),
                    });
                }
            }
            None => out.push(path_prefix(item)),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The module a path lands in: its longest prefix that is a module of the crate.
fn target_module(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Which module imports which, between the library's modules (a module's own submodules and
/// parents aside: `codec` declares `codec::xml`).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<(String, String)> = rust_files(&src())
        .into_iter()
        .filter_map(|f| Some((module_of(&f)?, std::fs::read_to_string(&f).unwrap())))
        .collect();
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &files {
        let uses: BTreeSet<String> = crate_paths(&code_of(text))
            .iter()
            .filter_map(|p| target_module(p, &modules))
            .filter(|t| {
                t != module
                    && !t.starts_with(&format!("{module}::"))
                    && !module.starts_with(&format!("{t}::"))
            })
            .collect();
        graph.insert(module.clone(), uses);
    }
    graph
}

/// The graph's circles: its strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

/// No new circle of imports appears, and a circle that is broken comes off the list.
#[test]
fn imports_between_modules_form_no_new_circle() {
    let found = circles(&import_graph());
    let known: Vec<Vec<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    let new: Vec<&Vec<String>> = found.iter().filter(|c| !known.contains(c)).collect();
    assert!(
        new.is_empty(),
        "modules that import each other in a circle (a lower layer must not use a higher one): {new:?}"
    );
    let broken: Vec<&Vec<String>> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(
        broken.is_empty(),
        "no longer a circle as listed, update KNOWN_CIRCLES in tests/it/architecture.rs: {broken:?}"
    );
}

/// The check finds a circle where there is one, through grouped and nested imports.
#[test]
fn the_circle_check_sees_grouped_imports() {
    let text = "use crate::{a::{X, Y}, b};\nfn f() { crate::c::d::g(); }\nuse crate::e::{self, f, g::{h}};";
    assert_eq!(
        crate_paths(text),
        ["a::X", "a::Y", "b", "c::d::g", "e", "e::f", "e::g::h"]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
}

/// The layer of a module: the index in [`LAYERS`] of its first path segment.
fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or_default();
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("{module} is in no layer: add its folder to LAYERS"))
}

/// Imports run downward: no module uses one in a higher layer, except those listed, which
/// may only go.
#[test]
fn imports_run_downward_between_layers() {
    let mut upward = Vec::new();
    for (from, uses) in import_graph() {
        for to in uses {
            if layer_of(&to) > layer_of(&from) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    let new: Vec<&String> = upward
        .iter()
        .filter(|e| !KNOWN_UPWARD.contains(&e.as_str()))
        .collect();
    assert!(
        new.is_empty(),
        "imports from a lower layer into a higher one:\n{}",
        new.iter()
            .map(|e| format!("    \"{e}\","))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let gone: Vec<&&str> = KNOWN_UPWARD
        .iter()
        .filter(|e| !upward.iter().any(|u| u == *e))
        .collect();
    assert!(
        gone.is_empty(),
        "turned around, take them off KNOWN_UPWARD: {gone:?}"
    );
}

/// No source file is longer than a reader can hold, except those listed, which may not grow.
#[test]
fn no_source_file_grows_past_600_lines() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for file in rust_files(&src()) {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        match LONG_FILES.iter().find(|(f, _)| *f == rel) {
            Some(&(_, allowed)) => {
                seen.insert(rel.clone());
                if lines > allowed {
                    problems.push(format!(
                        "{rel} has grown to {lines} lines (allowed {allowed} until it is split)"
                    ));
                } else if lines <= MAX_LINES {
                    problems.push(format!(
                        "{rel} is {lines} lines now: take it off LONG_FILES"
                    ));
                }
            }
            None if lines > MAX_LINES => {
                problems.push(format!(
                    "{rel} has {lines} lines, more than {MAX_LINES}: split it by concern"
                ));
            }
            None => {}
        }
    }
    for (f, _) in LONG_FILES {
        if !seen.contains(*f) {
            problems.push(format!("{f} is gone: take it off LONG_FILES"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
