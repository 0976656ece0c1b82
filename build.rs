//! Compiles every `blocklists/*.txt` into the binary: writes a table of (id, text) pairs, the id
//! being the file name without `.txt`, so adding a list to the catalogue is adding a file.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
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
