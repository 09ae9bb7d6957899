//! The broker's modules form a tree of dependencies: no two modules import each
//! other, directly or through others — except the request processors under
//! `processor/`, which share helpers with their parent. `lib.rs` wires everything
//! and nothing imports it.
//!
//! The check reads the sources: every `crate::…` and `super::…` path (in `use`
//! items and inline) outside `#[cfg(test)] mod tests` blocks is an edge from the
//! file's module to the longest module that path names. `cargo modules dependencies
//! -p broker --lib` draws the `use` edges of the same graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`filter::prepared`, `` for the crate root) of a source file.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "main.rs") {
            out.push(path);
        }
    }
}

/// The text of a file without its unit-test modules and comments.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|n| n.trim_start().starts_with("mod ")) {
            // Skip the test module: up to its closing brace at the same indentation.
            let header = lines.next().unwrap_or_default();
            if header.trim_end().ends_with(';') {
                continue;
            }
            let indent = header.len() - header.trim_start().len();
            for body in lines.by_ref() {
                if body.len() - body.trim_start().len() == indent && body.trim() == "}" {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap_or(line));
        code.push('\n');
    }
    code
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        out.push(format!("{prefix}{tree}"));
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{head}"), &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&format!("{prefix}{head}"), &inner[start..], out);
    }
}

/// Every `crate::…`/`super::…` path the code names, as written.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` items, braces expanded.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let stmt_end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            let tree: String = rest[at + 4..stmt_end].split_whitespace().collect();
            if tree.starts_with("crate::") || tree.starts_with("super::") {
                expand("", &tree, &mut out);
            }
        }
        rest = &rest[(at + 4).min(rest.len())..];
    }
    // Inline paths.
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let start = from + i;
            let before = code[..start].chars().last();
            let end = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                out.push(code[start..end].trim_end_matches(':').to_owned());
            }
            from = end.max(start + anchor.len());
        }
    }
    out
}

/// The longest known module a path written in `module` names.
fn resolve(module: &str, path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let mut parts = path.split("::").filter(|s| !s.is_empty()).peekable();
    match parts.next()? {
        "crate" => segs.clear(),
        "super" => {
            segs.pop();
            while parts.peek() == Some(&"super") {
                parts.next();
                segs.pop();
            }
        }
        _ => return None,
    }
    let mut best = segs.join("::");
    for p in parts {
        segs.push(p);
        let candidate = segs.join("::");
        if modules.contains(&candidate) {
            best = candidate;
        } else {
            break;
        }
    }
    Some(best)
}

fn allowed(a: &str, b: &str) -> bool {
    let in_processor = |m: &str| m == "processor" || m.starts_with("processor::");
    in_processor(a) && in_processor(b)
}

#[test]
fn broker_modules_import_each_other_only_inside_processor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let code = code_of(&std::fs::read_to_string(f).expect("readable source"));
        for p in paths_in(&code) {
            if let Some(to) = resolve(&m, &p, &modules) {
                if to != m {
                    edges.entry(m.clone()).or_default().insert(to);
                }
            }
        }
    }
    assert!(edges.get("context").is_some_and(|e| e.contains("topic_config")), "the scan sees imports: {edges:?}");

    // A cycle is a path from b back to a for an edge a -> b.
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(n) = todo.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                todo.extend(edges.get(&n).into_iter().flatten().filter(|x| !allowed(&n, x)).cloned());
            }
        }
        false
    };
    let mut cycles = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if !allowed(a, b) && reaches(b, a) {
                cycles.push(format!("{} -> {} -> ... -> {}", name(a), name(b), name(a)));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

fn name(m: &str) -> &str {
    if m.is_empty() {
        "crate root (lib.rs)"
    } else {
        m
    }
}

#[test]
fn the_scan_finds_paths_in_use_trees_and_code() {
    let code = "use crate::{a::b, c::{d, e}};\nuse super::x;\nfn f() { crate::y::z(); let q = foo::crate_like; }\n";
    let p = paths_in(code);
    for want in ["crate::a::b", "crate::c::d", "crate::c::e", "super::x", "crate::y::z"] {
        assert!(p.iter().any(|s| s == want), "{want} in {p:?}");
    }
    let modules: BTreeSet<String> = ["a", "c", "c::d", "y"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(resolve("q::r", "crate::c::d::Item", &modules).as_deref(), Some("c::d"));
    assert_eq!(resolve("c::d", "super::Thing", &modules).as_deref(), Some("c"));
    assert_eq!(resolve("y", "crate::now_ms", &modules).as_deref(), Some(""));
    let with_tests = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n";
    assert!(!paths_in(&code_of(with_tests)).iter().any(|s| s == "crate::b"));
}
