//! Reading and writing files under `state_dir`: the one way every part of the daemon touches
//! it (list copies, overrides, the observe table, and the query log's file, which SQLite then
//! writes in place).
//!
//! Nothing found there is trusted blindly, since a directory is only as safe as the people
//! who can write to it:
//! - a write goes to a fresh temporary file with a random name, created with `O_EXCL` and
//!   `O_NOFOLLOW` (a link planted at that name makes the creation fail and another name is
//!   drawn; it is never followed), synced, renamed over the final name (which replaces a
//!   link there, not its target), and the directory is synced after the rename;
//! - a read opens the file with `O_NOFOLLOW` and refuses anything that is not a regular
//!   file: a link, a FIFO (which would block the reader), a device.
//!
//! Files are created `0600` and directories `0750`: overrides and the query log show what
//! the household does. [`crate::permissions`] warns about a `state_dir` others can write.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How the temporary files of unfinished writes end.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Mode of the files written.
const FILE_MODE: u32 = 0o600;

/// Mode of the directories created.
const DIR_MODE: u32 = 0o750;

/// Creates `dir` and its missing parents (mode `0750`); an existing directory is left as it
/// is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Replaces `path` with a file holding `bytes`: written to a fresh temporary file beside it
/// (the same directory, so the rename is atomic), synced, renamed into place, then the
/// directory synced. Readers see the old file or the new one, never a part, and so does the
/// next start after a power cut. The directory must exist.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default();
    let mut prefix = name.to_os_string();
    prefix.push(".");
    // tempfile draws a random name and retries on a name already taken. The file is created
    // by our closure so that it carries O_NOFOLLOW on top of tempfile's O_EXCL; a temporary
    // file dropped before the rename (any error below) is removed.
    let mut temporary = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMPORARY_SUFFIX)
        .make_in(dir, |candidate| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(candidate)
        })?;
    // Without the sync the rename may reach the disk before the data: after a power cut the
    // name would hold an empty or cut file, and the old copy would be gone.
    temporary.as_file_mut().write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    sync_directory(dir);
    Ok(())
}

/// Makes sure `path` is a regular file only its owner can read and write, creating it
/// (empty, mode `0600`, never through a symbolic link) when missing and narrowing the mode of
/// one that is wider: for a file another program (SQLite) then writes in place, which takes
/// its journals' mode from it.
pub fn create_private(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// `path` opened for reading, or `None` when there is no such file. A symbolic link or
/// anything but a regular file is an error, never followed or read.
pub fn open(path: &Path) -> io::Result<Option<File>> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It changes
    // nothing for a regular file.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(untrusted(
                path,
                "is a symbolic link, which is never followed",
            ));
        }
        Err(error) => return Err(error),
    };
    if !file.metadata()?.is_file() {
        return Err(untrusted(path, "is not a regular file"));
    }
    Ok(Some(file))
}

/// The contents of `path`, or `None` when there is no such file (see [`open`]).
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(mut file) = open(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Some(bytes))
}

/// Moves the unreadable file at `path` to `<path>.bad` (replacing an older one), so that the
/// next save does not overwrite what a person may want to look at; returns where it went.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".bad");
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// [`read`], refusing a file larger than `max_bytes` (an error, nothing read into memory):
/// for what the daemon keeps there itself, whose size it knows a bound for.
pub fn read_at_most(path: &Path, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = open(path)? else {
        return Ok(None);
    };
    if file.metadata()?.len() > max_bytes {
        let message = format!("larger than {max_bytes} bytes");
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, max_bytes), &mut bytes)?;
    Ok(Some(bytes))
}

/// The size of `path`, or `None` when there is no such file (see [`open`]).
pub fn size(path: &Path) -> io::Result<Option<u64>> {
    open(path)?
        .map(|file| Ok(file.metadata()?.len()))
        .transpose()
}

/// Removes the temporary files of writes in `dir` that never finished (the process died
/// between writing and renaming). Call it only while nothing writes there, i.e. at start-up.
pub fn remove_unfinished_writes(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let leftovers = entries.flatten().map(|entry| entry.path()).filter(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().ends_with(TEMPORARY_SUFFIX))
    });
    for path in leftovers {
        // remove_file removes a link itself, never its target.
        if let Err(error) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove an unfinished write");
        }
    }
}

fn untrusted(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} {what}", path.display()),
    )
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Syncs `dir`, so a rename into it is on the disk before the next write starts (a list
/// body's rename before its meta's).
///
/// A failure is logged, not returned: the new file is already in place for every reader, so
/// calling the write failed would be untrue, and on a file system that cannot sync
/// directories nothing could ever be updated.
fn sync_directory(dir: &Path) {
    if let Err(error) = File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::warn!(
            path = %dir.display(),
            %error,
            "cannot sync the state directory; a power cut may undo the last write"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn writes_replace_a_link_at_the_final_name_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        let path = dir.path().join("copy.txt");
        symlink(&victim, &path).unwrap();

        write(&path, b"new copy\n").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"new copy\n"[..]));
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, FILE_MODE, "{mode:o}");
        assert_eq!(names(dir.path()), ["copy.txt", "victim"]);
    }

    #[test]
    fn links_and_special_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"secret\n").unwrap();
        let link = dir.path().join("copy.txt");
        symlink(&victim, &link).unwrap();
        let fifo = dir.path().join("fifo.txt");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

        for path in [&link, &fifo, &dir.path().to_path_buf()] {
            let error = read(path).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{path:?}: {error}"
            );
            assert!(
                error.to_string().contains(&*path.to_string_lossy()),
                "{error}"
            );
            assert!(size(path).is_err() && open(path).is_err(), "{path:?}");
        }
        assert!(
            read(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
        assert_eq!(size(&victim).unwrap(), Some(7));
    }

    #[test]
    fn unfinished_writes_are_removed_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        remove_unfinished_writes(&dir.path().join("missing")); // nothing to do
        write(&dir.path().join("a.txt"), b"a\n").unwrap();
        fs::write(dir.path().join("a.txt.x1Yz.tmp"), b"half").unwrap();
        remove_unfinished_writes(dir.path());
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn directories_are_created_closed_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("state/lists");
        create_dir(&nested).unwrap();
        create_dir(&nested).unwrap(); // already there: fine
        let mode = fs::metadata(&nested).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}
