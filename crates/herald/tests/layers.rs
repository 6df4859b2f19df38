//! The import graph flows one way (docs/architecture.md): the binary and
//! the server over the protocol adapters, the adapters over the hub, the
//! hub over the parts it wires (registry, history and store, cluster,
//! auth, audit…), and those over `herald-core`. This test reads the sources
//! and fails on any `crate::` path that points up a layer, so the shape
//! cannot drift back into a circle. Test modules (`#[cfg(test)]` onwards)
//! are free to build a whole hub.

use std::path::{Path, PathBuf};

/// The layers, top first. A file belongs to the first layer whose prefix
/// its path (relative to `src/`) starts with; anything else is a part.
const LAYERS: [(&str, &[&str]); 3] = [
    ("entry", &["main.rs", "cli/", "server/"]),
    ("adapter", &["http/", "mercure/"]),
    ("hub", &["hub/", "stream.rs", "audit_stream.rs"]),
];

/// The `crate::` module names of each layer.
const MODULES: [(&str, &[&str]); 3] = [
    ("entry", &["cli", "server"]),
    ("adapter", &["http", "mercure"]),
    ("hub", &["hub", "stream", "audit_stream"]),
];

/// 0 for the top layer, larger further down; parts are below every layer.
fn rank(layer: &str) -> usize {
    LAYERS.iter().position(|(l, _)| *l == layer).unwrap_or(LAYERS.len())
}

fn layer_of(rel: &str) -> &'static str {
    LAYERS
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| rel.starts_with(p)))
        .map_or("part", |(l, _)| l)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_import_graph_flows_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "the sources were found");
    let mut upward = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let mine = rank(layer_of(&rel));
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for (layer, modules) in MODULES {
                if rank(layer) >= mine {
                    continue;
                }
                // `use crate::{hub, http::x}` names modules inside braces.
                let grouped: Vec<&str> = code
                    .split("crate::{")
                    .skip(1)
                    .flat_map(|g| g.split('}').next().unwrap_or("").split(','))
                    .map(|item| item.trim().split("::").next().unwrap_or("").trim())
                    .collect();
                for m in modules {
                    if code.contains(&format!("crate::{m}::"))
                        || code.contains(&format!("crate::{m};"))
                        || grouped.contains(m)
                    {
                        upward.push(format!(
                            "{rel}:{}: {} reaches up into `{m}` ({layer}): {code}",
                            n + 1,
                            layer_of(&rel)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > 800).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files to split by concern:\n{}", long.join("\n"));
}
