//! Compiles every `blocklists/*.txt` into the binary: writes a table of (id, text) pairs, the id
//! being the file name without `.txt`, so adding a list to the catalogue is adding a file.
//! Also records the git commit the binary is built from, for `metasink --version`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    embed_git_commit();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("blocklists/ directory")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    // By id, so `metasink lists` reads alphabetically (all-meta before all-meta-brands).
    files.sort_by(|a, b| a.file_stem().cmp(&b.file_stem()));

    let mut table = String::from("&[\n");
    for path in &files {
        println!("cargo::rerun-if-changed={}", path.display());
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 list file name");
        writeln!(
            table,
            "    ({id:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to String");
    }
    table.push(']');

    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("bundled_lists.rs");
    std::fs::write(out, table).expect("write bundled_lists.rs");
}

/// Sets `METASINK_GIT_COMMIT` for the crate: the commit (12 hex digits) of the checkout, else
/// the variable of the same name in the build's environment (a build from a source tarball),
/// else "unknown". Rebuilds when HEAD moves: a commit or a checkout.
fn embed_git_commit() {
    println!("cargo::rerun-if-env-changed=METASINK_GIT_COMMIT");
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| std::env::var("METASINK_GIT_COMMIT").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    // HEAD names the branch; the branch's ref (or packed-refs) names the commit. Only existing
    // files are watched: cargo reruns the script on every build for a missing one.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo::rerun-if-changed={path}");
        }
    }
    println!("cargo::rustc-env=METASINK_GIT_COMMIT={commit}");
}

/// Runs git in the crate's directory: its trimmed output, or None (no git, not a checkout).
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
