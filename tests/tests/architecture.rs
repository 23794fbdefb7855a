//! The shape the design asks for, checked on the source so it stays true:
//! services never depend on each other, and inside every crate no module
//! uses one that uses it back.
//!
//! A module "uses" another when one of its files names an item path under
//! it (`use` trees and inline `crate::`/`super::` paths; comments and test
//! modules aside). Uses are compared between the two modules that are
//! siblings under their nearest common parent, so a file deep in `auth/`
//! using `state` counts as `auth` using `state`. A module using its own
//! parent or child is how a folder exposes its parts and does not count.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const CRATES: &[&str] = &[
    "proto",
    "ids",
    "service-runtime",
    "event-pipeline",
    "outbound-http",
    "sealing",
    "gateway",
    "chatbot-service",
    "integration-service",
    "analytics-service",
    "webhook-dispatcher",
    "tests",
];

/// The deployables: none may build on another.
const SERVICES: &[&str] = &[
    "gateway",
    "chatbot-service",
    "integration-service",
    "analytics-service",
    "webhook-dispatcher",
];

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

#[test]
fn services_never_depend_on_each_other() {
    for service in SERVICES {
        let manifest = fs::read_to_string(workspace().join(service).join("Cargo.toml")).expect("a manifest");
        let dependencies = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        for other in SERVICES.iter().filter(|other| other != &service) {
            let named = dependencies.lines().any(|line| {
                line.trim_start().starts_with(&format!("{other} "))
                    || line.trim_start().starts_with(&format!("{other}."))
            });
            assert!(
                !named,
                "{service} depends on {other}; services share only the common crates"
            );
        }
    }
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut loops = Vec::new();
    for krate in CRATES {
        let src = workspace().join(krate).join("src");
        let files = modules(&src);
        let known: BTreeSet<Module> = files.values().cloned().collect();
        let mut uses: BTreeMap<(Module, Module), BTreeSet<String>> = BTreeMap::new();
        for (path, module) in &files {
            let text = fs::read_to_string(path).expect("a source file");
            for target in referenced(&text, module, &known) {
                if let Some(pair) = siblings(module, &target) {
                    let file = path.strip_prefix(&src).unwrap_or(path).display().to_string();
                    uses.entry(pair).or_default().insert(file);
                }
            }
        }
        loops.extend(loops_in(krate, &uses));
    }
    assert!(loops.is_empty(), "modules that use each other:\n{}", loops.join("\n"));
}

/// Every source file of a crate, and the module it is.
fn modules(src: &Path) -> BTreeMap<PathBuf, Module> {
    let mut files = BTreeMap::new();
    let mut folders = vec![src.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src").with_extension("");
            let mut module: Module = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if module.first().is_some_and(|m| m == "bin") {
                continue;
            }
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            files.insert(path, module);
        }
    }
    files
}

/// The modules a file of `me` names items of.
fn referenced(text: &str, me: &Module, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let code = without_comments(text.split("#[cfg(test)]").next().unwrap_or_default());
    let mut paths = Vec::new();
    for statement in code.split(';') {
        if let Some(tree) = statement
            .trim_start()
            .strip_prefix("pub use ")
            .or_else(|| statement.trim_start().strip_prefix("use "))
        {
            expand(&[], tree, &mut paths);
        }
    }
    for (start, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        let preceded = code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if !preceded {
            let path: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
    paths.iter().filter_map(|path| resolve(path, me, known)).collect()
}

fn without_comments(code: &str) -> String {
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Flattens a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(prefix: &[String], tree: &str, paths: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        for part in split_top_level(inner) {
            expand(prefix, part, paths);
        }
        return;
    }
    if let Some((head, rest)) = tree.split_once("::{") {
        let mut prefix = prefix.to_vec();
        prefix.extend(head.split("::").map(|s| s.trim().to_owned()));
        expand(&prefix, &format!("{{{rest}"), paths);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or_default();
    let mut full = prefix.to_vec();
    full.extend(path.split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    paths.push(full);
}

fn split_top_level(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

/// The deepest known module a path names, if it names one of this crate.
fn resolve(path: &[String], me: &Module, known: &BTreeSet<Module>) -> Option<Module> {
    let (mut target, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super") => {
            let mut base = me.clone();
            let supers = path.iter().take_while(|s| *s == "super").count();
            base.truncate(base.len().saturating_sub(supers));
            (base, &path[supers..])
        }
        Some("self") => (me.clone(), &path[1..]),
        // A bare path: a child module of this one, or another crate.
        _ => (me.clone(), path),
    };
    let base_len = target.len();
    for segment in rest {
        target.push(segment.clone());
        if !known.contains(&target) {
            target.pop();
            break;
        }
    }
    let named_something =
        target.len() > base_len || matches!(path.first().map(String::as_str), Some("crate" | "super"));
    (named_something && known.contains(&target)).then_some(target)
}

/// The two modules under `a`'s and `b`'s nearest common parent, unless one
/// contains the other.
fn siblings(a: &Module, b: &Module) -> Option<(Module, Module)> {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (common < a.len() && common < b.len()).then(|| (a[..=common].to_vec(), b[..=common].to_vec()))
}

/// Every set of modules that reach each other through their uses, with
/// the uses that close the loop and the files they are in.
fn loops_in(krate: &str, uses: &BTreeMap<(Module, Module), BTreeSet<String>>) -> Vec<String> {
    let mut graph: BTreeMap<&Module, BTreeSet<&Module>> = BTreeMap::new();
    for (a, b) in uses.keys() {
        graph.entry(a).or_default().insert(b);
    }
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(module) = stack.pop() {
            for next in graph.get(module).into_iter().flatten() {
                if seen.insert(*next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&Module, BTreeSet<&Module>> = graph.keys().map(|m| (*m, reach(m))).collect();
    let mut groups = BTreeSet::new();
    for (module, reached) in &reachable {
        let group: BTreeSet<&Module> = reached
            .iter()
            .filter(|other| reachable.get(*other).is_some_and(|back| back.contains(module)))
            .copied()
            .collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups
        .iter()
        .map(|group| {
            let names: Vec<String> = group.iter().map(|m| m.join("::")).collect();
            let edges: Vec<String> = uses
                .iter()
                .filter(|((a, b), _)| group.contains(a) && group.contains(b))
                .map(|((a, b), files)| format!("    {} -> {} (in {files:?})", a.join("::"), b.join("::")))
                .collect();
            format!("{krate}: {} use each other\n{}", names.join(", "), edges.join("\n"))
        })
        .collect()
}

#[test]
fn the_check_sees_a_loop_between_files() {
    let known: BTreeSet<Module> = [vec!["a".to_owned()], vec!["b".to_owned()]].into_iter().collect();
    let a_uses = referenced("use crate::b::Thing;\n", &vec!["a".to_owned()], &known);
    let b_uses = referenced("fn f() { crate::a::go() }\n", &vec!["b".to_owned()], &known);
    assert!(a_uses.contains(&vec!["b".to_owned()]) && b_uses.contains(&vec!["a".to_owned()]));
    let nested = referenced(
        "use crate::{\n    a::{self, X},\n    // crate::b in a comment\n};\n",
        &vec!["c".to_owned()],
        &known,
    );
    assert_eq!(nested, [vec!["a".to_owned()]].into_iter().collect());
    assert_eq!(
        siblings(&vec!["a".into(), "x".into()], &vec!["b".into()]),
        Some((vec!["a".into()], vec!["b".into()]))
    );
    assert_eq!(siblings(&vec!["a".into(), "x".into()], &vec!["a".into()]), None);
}
