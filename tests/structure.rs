//! The shape of `src/`, checked: what issue 18's reshape made true stays true.
//!
//! - **Layers.** At every folder level of the module tree, the modules (each standing for
//!   itself and everything below it) import each other without a cycle: no module imports
//!   one that, directly or not, imports it back. An edge is any `crate::`, `super::` or
//!   `self::` path in production code (`use` trees expanded), resolved to the deepest
//!   module it names; comments, strings and `#[cfg(test)]` code do not count. A parent
//!   using its own children, and children using their parent's items, are not edges
//!   between siblings and are allowed.
//! - **Functions fit on a screen:** no production function is longer than 80 lines.
//! - **A findable top level:** at most 12 entries in `src/` besides `main.rs`.
//! - **Unique type names:** no two production structs, enums or traits share a name, so a
//!   name in a diff or a log says which one it is.
//! - **One test layout:** a module's tests sit inline (`#[cfg(test)] mod tests { … }`) up to
//!   about 100 lines, in a sibling `<module>/tests.rs` beyond; so an inline test module is at
//!   most [`MAX_INLINE_TEST_LINES`] long and a `tests.rs` file at least [`MIN_TESTS_FILE_LINES`].
//!
//! The module tree is read the way rustc reads it: from `src/lib.rs` through `mod`
//! declarations, so a file that is not compiled is not checked, and `#[cfg(test)] mod`
//! files are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FUNCTION_LINES: usize = 80;
const MAX_TOP_LEVEL_ENTRIES: usize = 12;
/// "About 100 lines": the slack keeps a module from moving back and forth over one test.
const MAX_INLINE_TEST_LINES: usize = 110;
const MIN_TESTS_FILE_LINES: usize = 90;

/// One module of the tree: its path from the crate root and its production code.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    /// The source with comments and string contents blanked and test items removed; the
    /// same length and line breaks as the file, so offsets are line numbers.
    code: String,
    /// The file's raw text (for line counts).
    raw: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Blanks comments, string and char literal contents (keeping newlines and length).
fn blank_comments_and_strings(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = s[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0
                || !is_ident(b[i - 1])
                || (b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))))
        {
            // Raw string r"…" / r#"…"# / br"…" (r#ident is not one: no quote follows).
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let start = j + 1;
            let end = (start..b.len())
                .find(|&k| b[k..].starts_with(&close))
                .unwrap_or(b.len());
            blank(&mut out, start, end);
            i = end + close.len();
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): blank only literals.
            let lit_end = if b.get(i + 1) == Some(&b'\\') {
                (i + 3..b.len().min(i + 12)).find(|&k| b[k] == b'\'')
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                // A multi-byte char literal: up to 4 UTF-8 bytes then a quote.
                (i + 2..b.len().min(i + 6))
                    .find(|&k| b[k] == b'\'')
                    .filter(|_| b.get(i + 1).is_some_and(|c| *c >= 0x80))
            };
            match lit_end {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: only ASCII bytes replace whole chars")
}

/// The offset of the brace closing the one at `open`.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (k, c) in code.bytes().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces after offset {open}");
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Offsets of whole-word occurrences of `word` in `code`.
fn words(code: &str, word: &str) -> Vec<usize> {
    let b = code.as_bytes();
    code.match_indices(word)
        .map(|(k, _)| k)
        .filter(|&k| {
            (k == 0 || !is_ident(b[k - 1])) && b.get(k + word.len()).is_none_or(|c| !is_ident(*c))
        })
        .collect()
}

fn ident_at(code: &str, mut k: usize) -> Option<(String, usize)> {
    let b = code.as_bytes();
    while k < b.len() && b[k].is_ascii_whitespace() {
        k += 1;
    }
    let start = k;
    while k < b.len() && is_ident(b[k]) {
        k += 1;
    }
    (k > start).then(|| (code[start..k].to_string(), k))
}

/// Removes `#[cfg(test)]` items (blanked in place) and returns the names of test-only
/// `mod x;` declarations.
fn remove_test_items(code: &mut String) -> BTreeSet<String> {
    let mut test_mods = BTreeSet::new();
    while let Some(at) = code.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        // The item ends at its first `;` or at the brace matching its first `{`.
        let semi = code[after..].find(';').map(|n| after + n);
        let brace = code[after..].find('{').map(|n| after + n);
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s,
            (Some(s), None) => s,
            (_, Some(b)) => matching_brace(code, b),
            (None, None) => code.len() - 1,
        };
        let item = code[after..=end].to_string();
        if let Some(m) = words(&item, "mod").first() {
            if item.trim_end().ends_with(';') {
                if let Some((name, _)) = ident_at(&item, m + 3) {
                    test_mods.insert(name);
                }
            }
        }
        let blanked: String = code[at..=end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(at..=end, &blanked);
    }
    test_mods
}

/// The module tree from `src/lib.rs`, production modules only.
fn modules() -> Vec<Module> {
    let mut out = Vec::new();
    load(&src().join("lib.rs"), vec![], &mut out);
    out
}

fn load(file: &Path, path: Vec<String>, out: &mut Vec<Module>) {
    let raw = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut code = blank_comments_and_strings(&raw);
    let test_mods = remove_test_items(&mut code);
    // Where `mod x;` files live: beside lib.rs / mod.rs, else in a folder named for the file.
    let stem = file.file_stem().unwrap().to_str().unwrap();
    let dir = if matches!(stem, "lib" | "mod" | "main") {
        file.parent().unwrap().to_path_buf()
    } else {
        file.parent().unwrap().join(stem)
    };
    let mut children = Vec::new();
    for k in words(&code, "mod") {
        let Some((name, end)) = ident_at(&code, k + 3) else {
            continue;
        };
        if code[end..].trim_start().starts_with(';') && !test_mods.contains(&name) {
            children.push(name);
        }
    }
    out.push(Module {
        path: path.clone(),
        file: file.to_path_buf(),
        code,
        raw,
    });
    for name in children {
        let flat = dir.join(format!("{name}.rs"));
        let nested = dir.join(&name).join("mod.rs");
        let child = if flat.exists() { flat } else { nested };
        let mut p = path.clone();
        p.push(name);
        load(&child, p, out);
    }
}

/// Every path a module names: `use` trees expanded, and `crate::`/`super::`/`self::` paths in
/// its code.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let b = code.as_bytes();
    for k in words(code, "use") {
        let Some(semi) = code[k..].find(';') else {
            continue;
        };
        // `X as Y` names X; whitespace goes (a tree spans lines).
        let mut tree = String::new();
        let mut tokens = code[k + 3..k + semi].split_whitespace();
        while let Some(t) = tokens.next() {
            if t == "as" {
                let renamed = tokens.next().unwrap_or("");
                tree.push_str(
                    renamed.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'),
                );
            } else {
                tree.push_str(t);
            }
        }
        expand_use(&tree, &mut Vec::new(), &mut paths);
    }
    for root in ["crate", "super", "self"] {
        for k in words(code, root) {
            if !code[k + root.len()..].starts_with("::") {
                continue;
            }
            let mut segs = vec![root.to_string()];
            let mut j = k + root.len();
            while code[j..].starts_with("::") {
                j += 2;
                let start = j;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                if j == start {
                    break;
                }
                segs.push(code[start..j].to_string());
            }
            paths.push(segs);
        }
    }
    paths
}

/// Expands a `use` tree (whitespace removed) such as `crate::{a::B,c::{D,E}}`.
fn expand_use(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let (head, rest) = match tree.find('{') {
        Some(open) => (&tree[..open], Some(&tree[open + 1..tree.len() - 1])),
        None => (tree, None),
    };
    let depth = prefix.len();
    prefix.extend(
        head.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    match rest {
        None => out.push(prefix.clone()),
        Some(inner) => {
            // Split on top-level commas.
            let mut level = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => {
                        expand_use(&inner[start..i], prefix, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand_use(&inner[start..], prefix, out);
            }
        }
    }
    prefix.truncate(depth);
}

/// The module a path names, from module `from`: the deepest existing module along it.
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = vec![];
            rest = &path[1..];
        }
        Some("super") | Some("self") => {
            base = from.to_vec();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    for seg in rest {
        base.push(seg.clone());
        if !known.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// Import edges between modules: (from, to), to ≠ from.
fn edges(mods: &[Module]) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut out = BTreeSet::new();
    for m in mods {
        for p in named_paths(&m.code) {
            if let Some(to) = resolve(&m.path, &p, &known) {
                if to != m.path {
                    out.insert((m.path.clone(), to));
                }
            }
        }
    }
    out
}

/// Cycles among the children of `parent` (each child standing for its subtree).
fn sibling_cycles(parent: &[String], edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let child = |p: &Vec<String>| -> Option<String> {
        (p.len() > parent.len() && p.starts_with(parent)).then(|| p[parent.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
    for (a, b) in edges {
        if let (Some(x), Some(y)) = (child(a), child(b)) {
            if x != y {
                graph.entry(x.clone()).or_default().insert(y.clone());
                why.entry((x, y))
                    .or_insert_with(|| format!("{} -> {}", a.join("::"), b.join("::")));
            }
        }
    }
    // A cycle exists through x→y when y reaches x.
    let reaches = |from: &str, to: &str| -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                stack.extend(graph.get(&n).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut found = Vec::new();
    for (x, ys) in &graph {
        for y in ys {
            if reaches(y, x) {
                found.push(format!(
                    "under `{}`: {x} -> {y} and back ({})",
                    if parent.is_empty() {
                        "crate".to_string()
                    } else {
                        parent.join("::")
                    },
                    why[&(x.clone(), y.clone())]
                ));
            }
        }
    }
    found
}

#[test]
fn the_module_graph_has_no_cycle_at_any_level() {
    let mods = modules();
    assert!(
        mods.len() > 30,
        "the module tree was not read: {} modules",
        mods.len()
    );
    let edges = edges(&mods);
    assert!(
        edges.len() > 50,
        "too few imports found ({}): the parser is broken",
        edges.len()
    );
    let mut cycles = Vec::new();
    for m in &mods {
        cycles.extend(sibling_cycles(&m.path, &edges));
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Production functions and their line counts: (file, name, lines).
fn functions(m: &Module) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for k in words(&m.code, "fn") {
        let Some((name, end)) = ident_at(&m.code, k + 2) else {
            continue;
        };
        // The body: the first `{` before any `;` (a declaration without a body has none).
        let rest = &m.code[end..];
        let (Some(open), semi) = (rest.find('{'), rest.find(';')) else {
            continue;
        };
        if semi.is_some_and(|s| s < open) {
            continue;
        }
        let close = matching_brace(&m.code, end + open);
        let first = m.raw[..k].matches('\n').count();
        let last = m.raw[..close].matches('\n').count();
        out.push((name, last - first + 1));
    }
    out
}

#[test]
fn no_production_function_is_longer_than_80_lines() {
    let mods = modules();
    let mut long = Vec::new();
    let mut seen = 0;
    for m in &mods {
        for (name, lines) in functions(m) {
            seen += 1;
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("{} fn {name}: {lines} lines", m.file.display()));
            }
        }
    }
    assert!(
        seen > 300,
        "only {seen} functions found: the parser is broken"
    );
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn src_has_at_most_12_entries_besides_main() {
    let entries: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "main.rs")
        .collect();
    assert!(
        entries.len() <= MAX_TOP_LEVEL_ENTRIES,
        "{} entries in src/ besides main.rs (at most {MAX_TOP_LEVEL_ENTRIES}): {entries:?}",
        entries.len()
    );
}

#[test]
fn production_type_names_are_unique() {
    let mut defined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &modules() {
        for kw in ["struct", "enum", "trait"] {
            for k in words(&m.code, kw) {
                if let Some((name, _)) = ident_at(&m.code, k + kw.len()) {
                    defined.entry(name).or_default().push(m.path.join("::"));
                }
            }
        }
    }
    assert!(
        defined.len() > 40,
        "only {} types found: the parser is broken",
        defined.len()
    );
    let twice: Vec<String> = defined
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(name, at)| format!("{name}: {}", at.join(", ")))
        .collect();
    assert!(
        twice.is_empty(),
        "type names defined more than once:\n{}",
        twice.join("\n")
    );
}

/// Line counts of the inline `#[cfg(test)] mod x { … }` blocks in `raw`.
fn inline_test_modules(raw: &str) -> Vec<(String, usize)> {
    let code = blank_comments_and_strings(raw);
    let mut out = Vec::new();
    for (at, _) in code.match_indices("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let Some((kw, end)) = ident_at(&code, after) else {
            continue;
        };
        let Some((name, end)) = (kw == "mod").then(|| ident_at(&code, end)).flatten() else {
            continue;
        };
        if !code[end..].trim_start().starts_with('{') {
            continue;
        }
        let open = end + code[end..].find('{').unwrap();
        let close = matching_brace(&code, open);
        let lines = raw[at..close].matches('\n').count() + 1;
        out.push((name, lines));
    }
    out
}

#[test]
fn tests_sit_inline_up_to_about_100_lines_and_in_tests_rs_beyond() {
    let mut wrong = Vec::new();
    let mut inline = 0;
    for m in &modules() {
        for (name, lines) in inline_test_modules(&m.raw) {
            inline += 1;
            if lines > MAX_INLINE_TEST_LINES {
                wrong.push(format!(
                    "{}: inline `mod {name}` is {lines} lines: move it to a sibling tests.rs",
                    m.file.display()
                ));
            }
        }
    }
    let mut files = 0;
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "tests.rs") {
                files += 1;
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                if lines < MIN_TESTS_FILE_LINES {
                    wrong.push(format!(
                        "{}: {lines} lines: short enough to sit inline in its module",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(
        inline > 10 && files > 10,
        "{inline} inline test modules, {files} tests.rs files found"
    );
    assert!(wrong.is_empty(), "test layout:\n{}", wrong.join("\n"));
}

/// The checker's own parsing, on known inputs: it must see what it claims to check.
#[test]
fn the_checker_reads_use_trees_comments_and_test_items() {
    let mut paths = Vec::new();
    expand_use("crate::{a::B,c::{D,e::F},g}", &mut Vec::new(), &mut paths);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        ["crate::a::B", "crate::c::D", "crate::c::e::F", "crate::g"]
    );

    let code = blank_comments_and_strings("let s = \"crate::x\"; // crate::y\nuse crate::z;");
    let named: Vec<String> = named_paths(&code).iter().map(|p| p.join("::")).collect();
    assert!(named.iter().all(|p| p == "crate::z"), "{named:?}");
    assert!(!named.is_empty());

    let mut code = String::from(
        "fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::q;\n}\n#[cfg(test)]\nmod props;\n",
    );
    let test_mods = remove_test_items(&mut code);
    assert_eq!(test_mods.into_iter().collect::<Vec<_>>(), ["props"]);
    assert!(!code.contains("crate::q") && code.contains("fn a()"));

    let known: BTreeSet<Vec<String>> = [vec![], vec!["a".into()], vec!["a".into(), "b".into()]]
        .into_iter()
        .collect();
    let p = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(resolve(&p("a::b"), &p("super::X"), &known), Some(p("a")));
    assert_eq!(
        resolve(&p("a"), &p("crate::a::b::f"), &known),
        Some(p("a::b"))
    );

    // A cycle between siblings is reported, a parent/child pair is not.
    let e: BTreeSet<(Vec<String>, Vec<String>)> = [
        (p("x::i"), p("y")),
        (p("y"), p("x")),
        (p("z"), p("z::w")),
        (p("z::w"), p("z")),
    ]
    .into_iter()
    .collect();
    let raw = "fn f() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
    assert_eq!(inline_test_modules(raw), [("tests".to_string(), 5)]);

    let cycles = sibling_cycles(&[], &e);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(sibling_cycles(&p("z"), &e).is_empty());
}
