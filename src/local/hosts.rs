//! Hosts files (`/etc/hosts`, hosts(5)): `ADDRESS NAME [ALIAS...]` a line, `#` to the end of
//! a line is a comment. Every name on a line gets the address; the first (canonical) name is
//! the one its PTR record gives. A line that does not read is skipped and reported, as a
//! list's invalid lines are: one typo never loses the rest of the file.

use std::net::IpAddr;

use crate::config::local::is_domain_name;

/// One usable line: an address and its names (lower-case, no trailing dot), canonical first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub address: IpAddr,
    /// Its names.
    pub names: Vec<String>,
}

/// Skipped lines kept to show (`metasink check`); the rest are only counted.
pub const MAX_SKIPPED_SAMPLES: usize = 20;

/// A line that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// The lines of a hosts file skipped: how many, and the first [`MAX_SKIPPED_SAMPLES`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Lines skipped.
    pub count: usize,
    /// The first of them, with why.
    pub samples: Vec<SkippedLine>,
}

impl Skipped {
    fn push(&mut self, line: SkippedLine) {
        self.count += 1;
        if self.samples.len() < MAX_SKIPPED_SAMPLES {
            self.samples.push(line);
        }
    }
}

/// The entries of a hosts file's `text`, and the lines skipped.
pub fn parse(text: &str) -> (Vec<HostsEntry>, Skipped) {
    let mut entries = Vec::new();
    let mut skipped = Skipped::default();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let Some(address) = fields.next() else {
            continue;
        };
        let skip = |reason: String| SkippedLine {
            line: index + 1,
            reason,
        };
        // `fe80::1%eth0`: a scope has no place in DNS data.
        let Ok(address) = address.parse::<IpAddr>() else {
            skipped.push(skip(format!("`{address}` is not an IP address")));
            continue;
        };
        let mut names = Vec::new();
        for name in fields {
            let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            if is_domain_name(&name) {
                names.push(name);
            } else {
                skipped.push(skip(format!("`{name}` is not a host name")));
            }
        }
        if names.is_empty() {
            skipped.push(skip(format!("`{address}` has no name")));
            continue;
        }
        entries.push(HostsEntry {
            address: address.to_canonical(),
            names,
        });
    }
    (entries, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_aliases_comments_and_mistakes() {
        let text = "# the house\n127.0.0.1\tlocalhost\n\n192.168.1.10 NAS.lan nas # the NAS\n\
                    fd00::10 nas.lan\nnot-an-ip printer\n192.168.1.11\n192.168.1.12 ok bad!name\n";
        let (entries, skipped) = parse(text);
        let pairs: Vec<(String, Vec<String>)> = entries
            .iter()
            .map(|e| (e.address.to_string(), e.names.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("127.0.0.1".to_owned(), vec!["localhost".to_owned()]),
                (
                    "192.168.1.10".to_owned(),
                    vec!["nas.lan".to_owned(), "nas".to_owned()]
                ),
                ("fd00::10".to_owned(), vec!["nas.lan".to_owned()]),
                ("192.168.1.12".to_owned(), vec!["ok".to_owned()]),
            ]
        );
        let lines: Vec<usize> = skipped.samples.iter().map(|s| s.line).collect();
        assert_eq!(lines, [6, 7, 8]);
        assert_eq!(skipped.count, 3);
        assert!(
            skipped.samples[0].reason.contains("not-an-ip"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_file_of_mistakes_keeps_a_few_to_show_and_counts_the_rest() {
        let text = "not-an-ip name\n".repeat(1000);
        let (entries, skipped) = parse(&text);
        assert!(entries.is_empty());
        assert_eq!(skipped.count, 1000);
        assert_eq!(skipped.samples.len(), MAX_SKIPPED_SAMPLES);
    }
}
