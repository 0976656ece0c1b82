//! Where a list's text comes from: the catalogue compiled into the binary, or a file.

use std::borrow::Cow;
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
    /// The stored copy of a URL list could not be read.
    #[error("cannot read the stored copy: {0}")]
    Store(std::io::Error),
}

/// Reads the text of a list; URL lists are read from their stored copy in `store`.
pub fn read(source: &ListSource, store: &ListStore) -> Result<Cow<'static, str>, SourceError> {
    match source {
        ListSource::Url(url) => match store.load(url) {
            Ok(Some(bytes)) => Ok(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())),
            Ok(None) => Err(SourceError::NotDownloaded),
            Err(error) => Err(SourceError::Store(error)),
        },
        ListSource::Bundled(id) => catalogue::bundled_text(id)
            .map(Cow::Borrowed)
            .ok_or_else(|| SourceError::UnknownBundled(id.clone())),
        ListSource::File(path) => std::fs::read(path)
            .map(|bytes| Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
            .map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            }),
    }
}

/// How a source is shown to people: `bundled:meta-ai` or the file path.
pub fn describe(source: &ListSource) -> String {
    match source {
        ListSource::Bundled(id) => format!("bundled:{id}"),
        ListSource::File(path) => path.display().to_string(),
        ListSource::Url(url) => url.clone(),
    }
}
