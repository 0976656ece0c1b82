//! The config file: arbitrary text through `config::parse`, the path taken at start-up, by
//! `metasink check` and on every reload. A refused config must produce an error whose
//! `Display` (what the operator reads) works and names the file.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Relative list and token paths resolve under a directory that does not exist.
const PATH: &str = "/nonexistent/metasink-fuzz/config.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // `config::load` reads the file with read_to_string: a config is always UTF-8.
        return;
    };
    if reads_a_file(text) {
        return;
    }
    match metasink::config::parse(text, Path::new(PATH)) {
        Ok(settings) => {
            // What `metasink check` prints of it.
            let _ = format!("{settings:?}");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with(PATH),
                "{message:?} does not name the file"
            );
        }
    }
});

/// `server.api_token_file` is the one key `parse` follows to the file system: a fuzzer that
/// wrote `/dev/zero` or `/dev/stdin` there would make the target read forever, which tests
/// the file, not the parser. The key is looked up after TOML decoding, so an escaped spelling
/// of it is caught too.
fn reads_a_file(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    table
        .get("server")
        .and_then(toml::Value::as_table)
        .is_some_and(|server| server.contains_key("api_token_file"))
}
