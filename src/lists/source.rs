//! Where a list's text comes from: the catalogue compiled into the binary, or a file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use super::store::ListStore;
use crate::catalogue;
use crate::config::ListSource;

/// Why a list's text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `bundled:ID` names no bundled list (validation normally catches this first).
    #[error("no bundled list is called {0:?}")]
    UnknownBundled(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A URL list that has not been downloaded yet (the download runs in the background).
    #[error("not downloaded yet")]
    NotDownloaded,
    /// The stored copy of a URL list, or a list file, could not be read to the end.
    #[error("cannot read the list: {0}")]
    Store(std::io::Error),
}

/// Passes each line of a list (without its line ending) to `on_line`. Files and stored
/// downloads are streamed, so a reload of a million-name list never holds its whole text.
/// Bytes that are not UTF-8 only spoil their own line.
pub fn for_each_line(
    source: &ListSource,
    store: &ListStore,
    mut on_line: impl FnMut(&str),
) -> Result<(), SourceError> {
    let file = match source {
        ListSource::Bundled(id) => {
            let text = catalogue::bundled_text(id)
                .ok_or_else(|| SourceError::UnknownBundled(id.clone()))?;
            text.lines().for_each(on_line);
            return Ok(());
        }
        ListSource::File(path) => File::open(path).map_err(|source| SourceError::Read {
            path: path.clone(),
            source,
        })?,
        ListSource::Url(url) => store
            .open(url)
            .map_err(SourceError::Store)?
            .ok_or(SourceError::NotDownloaded)?,
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(SourceError::Store)?;
        if read == 0 {
            return Ok(());
        }
        let end = line.strip_suffix(b"\n").unwrap_or(&line);
        let end = end.strip_suffix(b"\r").unwrap_or(end);
        match std::str::from_utf8(end) {
            Ok(text) => on_line(text),
            Err(_) => on_line(&String::from_utf8_lossy(end)),
        }
    }
}

/// Read buffer for list files.
const READ_BUFFER: usize = 64 * 1024;

/// How a source is shown to people: `bundled:meta-ai` or the file path.
pub fn describe(source: &ListSource) -> String {
    match source {
        ListSource::Bundled(id) => format!("bundled:{id}"),
        ListSource::File(path) => path.display().to_string(),
        ListSource::Url(url) => url.clone(),
    }
}
