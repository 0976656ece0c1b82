//! The layers of `src/lib.rs` hold: the modules' imports form no cycle, at the top level
//! (`config`, `dns`, `pipeline`, …) or among the modules of any folder (`dns/reply`,
//! `dns/request`, …).
//!
//! It reads the `crate::` and `super::` paths of every file under `src/` (as written: in `use`
//! trees and inline), leaving out what follows a file's first `#[cfg(test)]` (tests may reach
//! anywhere) and comments. An item a module root re-exports (`super::Question`) counts as the
//! root's, not as the sibling that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// A module by its path below the crate root (`["dns", "reply"]`); the root is empty.
type ModulePath = Vec<String>;

/// Every module file under `dir`, as (module path, code before its tests).
fn module_files(dir: &Path, prefix: &[String], out: &mut Vec<(ModulePath, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|entry| entry.expect("src/ is readable").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            module_files(&path, &inner, out);
            continue;
        }
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let mut module = prefix.to_vec();
        match stem {
            "mod" => {}
            "lib" | "main" if prefix.is_empty() => {}
            _ => module.push(stem.to_owned()),
        }
        if module.last().is_some_and(|last| last == "tests") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a source file is readable");
        let code: String = before_tests(&text)
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        out.push((module, code));
    }
}

/// `text` up to its inline test module (`#[cfg(test)] mod tests {`), if any. A test module
/// in a file of its own (`#[cfg(test)] mod tests;`) is left out by its name instead.
fn before_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        let line = after.lines().next().unwrap_or_default();
        // `mod tests {`, `pub(super) mod tests {`, …
        let declared = line.split_whitespace().take(2).any(|word| word == "mod");
        if declared && line.contains('{') {
            return &text[..start];
        }
        from = start + 1;
    }
    text
}

/// The paths (segments after `crate::`/`super::`, `use` trees expanded) that start at each
/// occurrence of `anchor` in `code`.
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(anchor) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + anchor.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut chars = rest.chars().peekable();
        tree(&mut chars, Vec::new(), &mut paths);
    }
    paths
}

/// Reads one `use` tree (`a::b`, `a::{b, c::d}`, `{a, b}`) from `chars`, each leaf path
/// (prefixed with `prefix`) into `out`.
fn tree(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    let mut path = prefix;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                tree(chars, path.clone(), out);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.next() {
                    Some(',') => continue,
                    _ => return,
                }
            }
        }
        let mut segment = String::new();
        while let Some(&c) = chars.peek() {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            segment.push(c);
            chars.next();
        }
        if segment.is_empty() {
            break;
        }
        path.push(segment);
        let mut lookahead = chars.clone();
        if lookahead.next() == Some(':') && lookahead.next() == Some(':') {
            chars.next();
            chars.next();
        } else {
            break;
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Every module → module reference, as absolute module paths.
fn references(files: &[(ModulePath, String)]) -> BTreeSet<(ModulePath, ModulePath)> {
    let mut edges = BTreeSet::new();
    for (module, code) in files {
        let mut targets = paths_after(code, "crate::");
        for mut path in paths_after(code, "super::") {
            // `super::super::x` and `super::x` from `module`.
            let mut up = 1;
            while path.first().is_some_and(|first| first == "super") {
                path.remove(0);
                up += 1;
            }
            let Some(base) = module.len().checked_sub(up) else {
                continue;
            };
            let mut absolute = module[..base].to_vec();
            absolute.extend(path);
            targets.push(absolute);
        }
        for target in targets {
            edges.insert((module.clone(), target));
        }
    }
    edges
}

/// A cycle among the children of every module, if any: (the folder, the cycle).
fn cycles(files: &[(ModulePath, String)]) -> Vec<(ModulePath, Vec<String>)> {
    let modules: BTreeSet<ModulePath> = files.iter().map(|(module, _)| module.clone()).collect();
    let edges = references(files);
    let mut found = Vec::new();
    for folder in &modules {
        let depth = folder.len();
        let child = |path: &ModulePath| -> Option<String> {
            let name = path.get(depth)?;
            let mut module = folder.clone();
            module.push(name.clone());
            (path.starts_with(folder) && modules.contains(&module)).then(|| name.clone())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in &edges {
            if let (Some(a), Some(b)) = (child(from), child(to))
                && a != b
            {
                graph.entry(a).or_default().insert(b);
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            found.push((folder.clone(), cycle));
        }
    }
    found
}

/// One cycle of `graph`, if it has any (depth-first search, three colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|on| on == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn source_files() -> Vec<(ModulePath, String)> {
    let mut files = Vec::new();
    module_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut files,
    );
    files
}

#[test]
fn the_modules_form_no_cycle() {
    let found = cycles(&source_files());
    let described: Vec<String> = found
        .iter()
        .map(|(folder, cycle)| format!("in crate::{}: {}", folder.join("::"), cycle.join(" → ")))
        .collect();
    assert!(
        described.is_empty(),
        "import cycles:\n{}",
        described.join("\n")
    );
}

#[test]
fn the_reader_sees_use_trees_super_paths_and_cycles() {
    let file = |module: &[&str], code: &str| {
        let module = module.iter().map(|s| s.to_string()).collect();
        (module, code.to_owned())
    };
    let files = [
        file(&[], ""),
        file(&["a"], "use crate::{b::x, c};"),
        file(&["b"], "fn f() { crate::c::g() }"),
        file(&["c"], "use crate::{d::{self, y}};"),
        file(&["d"], "// use crate::a;\nuse super::a::z;"),
        file(
            &["e"],
            "#[cfg(test)]\nmod t;\nuse crate::a;\n#[cfg(test)]\npub(super) mod t {\nuse crate::e;",
        ),
        file(&["e", "f"], "use super::g::h;"),
        file(&["e", "g"], "use super::super::e::f;"),
    ];
    let found = cycles(&files);
    let names: Vec<String> = found
        .iter()
        .map(|(folder, cycle)| format!("{}:{}", folder.join("::"), cycle.join(">")))
        .collect();
    assert_eq!(names, [":a>b>c>d>a", "e:f>g>f"]);
}
