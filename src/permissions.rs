//! Warnings about files whose modes let other users in: a `state_dir` they can write (they
//! could put their own list copies there, and so decide what the house resolves) and a file
//! holding the API token they can read (they could reload the config and refresh lists, and
//! later read the query log). `metasink check` prints them; the daemon logs them at start.
//!
//! Warnings, not refusals: a loose mode is for the administrator to fix, and refusing to
//! start would take the house's DNS down over it (the check runs as systemd's
//! `ExecStartPre`). The daemon does not depend on the modes being right to stay safe from
//! planted links and special files: [`crate::state_files`] never follows or reads them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::Settings;

/// Every warning `settings` calls for, each a sentence naming the file, its mode and the fix.
pub fn warnings(settings: &Settings) -> Vec<String> {
    let mut warnings = state_dir_warnings(&settings.server.state_dir);
    if let Some(file) = &settings.server.token_file {
        warnings.extend(readable_secret(file));
    }
    warnings
}

/// The state directory and each directory in it (`lists/`, ...): others must not be able to
/// write there, and the daemon's user should own them. A directory not created yet is fine:
/// [`crate::state_files::create_dir`] creates it `0750`.
fn state_dir_warnings(state_dir: &Path) -> Vec<String> {
    let mut dirs = vec![state_dir.to_path_buf()];
    if let Ok(entries) = fs::read_dir(state_dir) {
        let inner = entries.flatten().filter(|entry| {
            // file_type() does not follow links: a link is judged by what it points at
            // below, through metadata(), only when it leads to a directory.
            fs::metadata(entry.path()).is_ok_and(|metadata| metadata.is_dir())
        });
        dirs.extend(inner.map(|entry| entry.path()));
    }
    let user = effective_uid();
    dirs.iter()
        .filter_map(|dir| Some((dir, fs::metadata(dir).ok()?)))
        .flat_map(|(dir, metadata)| {
            let mode = metadata.mode() & 0o7777;
            let shown = dir.display();
            let writable = (mode & 0o022 != 0).then(|| {
                format!(
                    "state directory {shown} can be written by {} (mode {mode:04o}): they could \
                     replace the stored lists and so change what is blocked; fix: chmod 750 {shown}",
                    who_can_write(mode)
                )
            });
            let owner = metadata.uid();
            let foreign = (owner != user).then(|| {
                format!(
                    "state directory {shown} is owned by uid {owner}, not by uid {user} that \
                     metasink runs as: its owner could replace the stored lists; fix: chown {user} \
                     {shown} (systemd's StateDirectory= does this for the service)"
                )
            });
            writable.into_iter().chain(foreign)
        })
        .collect()
}

/// A warning when users other than the file's owner and group can read `file`, which holds
/// the API token. The group may read it (`640 root:metasink` lets a daemon of a fixed user in).
fn readable_secret(file: &Path) -> Option<String> {
    let mode = fs::metadata(file).ok()?.mode() & 0o7777;
    let shown = file.display();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{shown} holds the API token and every user of this machine can read it (mode \
             {mode:04o}); fix: chmod 600 {shown}, or chmod 640 and chown root:metasink when the \
             daemon runs as user metasink (with the systemd unit, move the token to \
             api_token_file and LoadCredential=, see the README)"
        )
    })
}

/// Who besides the owner may write to a directory of `mode`, in words.
fn who_can_write(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        (false, _) => "every user",
    }
}

/// The user this process runs as.
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_state_dir_others_can_write_is_named_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let lists = dir.path().join("lists");
        fs::create_dir(&lists).unwrap();
        chmod(dir.path(), 0o750);
        chmod(&lists, 0o755);
        assert_eq!(state_dir_warnings(dir.path()), Vec::<String>::new());
        assert_eq!(
            state_dir_warnings(&dir.path().join("missing")),
            Vec::<String>::new()
        );

        chmod(&lists, 0o777);
        let warnings = state_dir_warnings(dir.path());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let shown = lists.display();
        assert!(
            warnings[0].contains(&format!(
                "{shown} can be written by its group and others (mode 0777)"
            )) && warnings[0].contains(&format!("chmod 750 {shown}")),
            "{warnings:?}"
        );
        chmod(dir.path(), 0o770);
        let warnings = state_dir_warnings(dir.path());
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("by its group (mode 0770)")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_token_file_only_others_can_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api-token");
        fs::write(&token, "0123456789abcdef\n").unwrap();
        for (mode, warned) in [
            (0o600, false),
            (0o640, false),
            (0o400, false),
            (0o644, true),
        ] {
            chmod(&token, mode);
            let warning = readable_secret(&token);
            assert_eq!(warning.is_some(), warned, "{mode:o}: {warning:?}");
        }
        let warning = readable_secret(&token).unwrap();
        assert!(
            warning.contains(&format!("{} holds the API token", token.display()))
                && warning.contains("(mode 0644)")
                && warning.contains("chmod 600")
                && warning.contains("root:metasink"),
            "{warning}"
        );
    }
}
