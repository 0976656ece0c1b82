//! The domain matcher: one structure for every list, mapping a name to the set of lists that
//! contain it.
//!
//! It is sized for a million names in about 30 bytes each, names included (DESIGN.md allows 32:
//! a 19-byte name on average, a 4-byte record header, 6.7 bytes of slots at load 3/4):
//! - `arena`: every distinct name once, as a record `[len: u8][mask-set id: u24 LE][name]`.
//! - an open-addressing table with linear probing (load ≤ 3/4) of two parallel arrays: `tags`
//!   (one byte of the name's hash; 0 marks an empty slot) and `offsets` (where the record starts
//!   in the arena). The tag array is small enough to stay in cache, and lets a probe pass over
//!   almost every other name without touching the arena.
//! - `sets`: the de-duplicated table of mask sets (exact, subtree, allow-exact, allow-subtree).
//!   Real configurations have a few hundred distinct ones, so a record only holds an index.
//!
//! A lookup hashes the name and each parent on a label boundary (a handful of probes) and
//! combines the masks it finds. A miss, the common case, mostly reads only the tag array (about
//! 1.5 MB for a million names, which stays in cache); a hit also reads one offset and one
//! record, two more cache misses when they are cold.
//!
//! Once built, the arrays are backed by huge pages where the kernel allows
//! ([`crate::memory::back_with_huge_pages`]): a lookup's random reads then rarely wait for a
//! page-table walk on top of the cache miss.
//!
//! Names are hashed with foldhash under a random seed per builder: blocklists come from third
//! parties, and one crafted to pile its names onto a single probe path would slow down every
//! query and every rebuild.
//!
//! The builder grows the very table the matcher uses, so building needs no second copy of the
//! names; only a final resize to the right size briefly holds two copies of the (small) slot
//! arrays.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;

use crate::net::suffixes;
use crate::policy::mask::{ListIndex, ListMask, MAX_LISTS};

/// Bytes before the name in an arena record: the length and the mask-set id.
const HEADER: usize = 4;

/// Longest name a record can hold (its length is one byte); DNS names are shorter anyway.
const MAX_STORED_NAME: usize = u8::MAX as usize;

/// Mask-set ids are stored in three bytes.
const MAX_SETS: usize = 1 << 24;

/// Slots are grown when more than 3/4 of them are in use: linear probing stays short
/// (about 2.5 slots on a hit, 8.5 tag bytes on a miss) while the table stays small.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;

/// Smallest table allocated once the first name arrives.
const MIN_SLOTS: usize = 16;

/// How an entry matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only the name itself.
    Exact,
    /// The name and every name below it on a label boundary.
    Subdomains,
}

/// One entry that covers a name, as `metasink explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryHit {
    /// The stored name that matched: the queried name itself or one of its parents.
    pub entry: String,
    /// The list the entry belongs to.
    pub list: ListIndex,
    /// How the entry matches.
    pub scope: Scope,
    /// True for an exception (allow) entry.
    pub allow: bool,
}

/// The lists that hold one name, by kind of entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct MaskSet {
    exact: ListMask,
    subtree: ListMask,
    allow_exact: ListMask,
    allow_subtree: ListMask,
}

impl MaskSet {
    /// This set with `list` added for one kind of entry.
    fn with(mut self, list: ListIndex, scope: Scope, allow: bool) -> Self {
        let mask = match (allow, scope) {
            (false, Scope::Exact) => &mut self.exact,
            (false, Scope::Subdomains) => &mut self.subtree,
            (true, Scope::Exact) => &mut self.allow_exact,
            (true, Scope::Subdomains) => &mut self.allow_subtree,
        };
        *mask = mask.or(ListMask::single(list));
        self
    }

    /// The four kinds of entry in `explain` order, with the lists of each. Exact entries only
    /// count when the stored name is the queried name itself.
    fn kinds(self, is_query: bool) -> [(Scope, bool, ListMask); 4] {
        let own = |mask: ListMask| if is_query { mask } else { ListMask::EMPTY };
        [
            (Scope::Exact, false, own(self.exact)),
            (Scope::Subdomains, false, self.subtree),
            (Scope::Exact, true, own(self.allow_exact)),
            (Scope::Subdomains, true, self.allow_subtree),
        ]
    }
}

/// Collects entries, merging duplicates as they come, and turns them into a [`Matcher`].
pub struct MatcherBuilder {
    table: Table,
    sets: Vec<MaskSet>,
    set_ids: HashMap<MaskSet, u32, RandomState>,
    /// Entries that could not be stored (empty or over-long names, capacity exhausted).
    dropped: usize,
}

impl MatcherBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder with room for `entries` distinct names of average length, so that
    /// loading them does not grow the table.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            table: Table::with_capacity(entries),
            sets: Vec::new(),
            set_ids: HashMap::default(),
            dropped: 0,
        }
    }

    /// Adds one entry. A name added again (for any list, even the same one) is merged with what
    /// is already stored.
    ///
    /// `name` must already be normalised: lower-case ASCII, no trailing dot — what
    /// [`crate::lists::parse`] yields. An empty name, a name over 255 bytes, a list index of
    /// [`MAX_LISTS`] or more, or an entry past the structure's capacity (4 GiB of names, 16 M
    /// distinct mask sets) is not stored; `build` logs how many were dropped.
    pub fn add(&mut self, name: &str, list: ListIndex, scope: Scope, allow: bool) {
        let name = name.as_bytes();
        let storable = !name.is_empty()
            && name.len() <= MAX_STORED_NAME
            && usize::from(list) < MAX_LISTS
            && self.table.reserve_one(name.len());
        if !storable {
            self.dropped += 1;
            return;
        }
        let hash = self.table.hash(name);
        let stored = match self.table.find(name, hash) {
            Ok(offset) => self.merge(offset, list, scope, allow),
            Err(slot) => self.insert(slot, name, hash, list, scope, allow),
        };
        if !stored {
            self.dropped += 1;
        }
    }

    /// Finishes the structure: the table is resized to the number of distinct names and spare
    /// capacity is given back.
    pub fn build(self) -> Matcher {
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "matcher: entries not stored (empty or over-long name, list index out of range, \
                 or capacity exhausted)"
            );
        }
        let mut table = self.table;
        table.fit();
        table.back_with_huge_pages();
        Matcher {
            table,
            sets: self.sets.into_boxed_slice(),
        }
    }

    /// Adds a list to a stored name. False when the new combination of masks has no id.
    fn merge(&mut self, offset: u32, list: ListIndex, scope: Scope, allow: bool) -> bool {
        let old = self.sets[self.table.set_id(offset) as usize];
        let merged = old.with(list, scope, allow);
        if merged == old {
            // The same entry again: common when lists overlap.
            return true;
        }
        match self.intern(merged) {
            Some(id) => {
                self.table.set_set_id(offset, id);
                true
            }
            None => false,
        }
    }

    /// Stores a new name in the empty `slot`. False when its masks have no id.
    fn insert(
        &mut self,
        slot: usize,
        name: &[u8],
        hash: u64,
        list: ListIndex,
        scope: Scope,
        allow: bool,
    ) -> bool {
        let set = MaskSet::default().with(list, scope, allow);
        self.intern(set)
            .map(|id| self.table.insert(slot, name, hash, id))
            .is_some()
    }

    /// The id of `set`, adding it to the table of sets if it is new.
    fn intern(&mut self, set: MaskSet) -> Option<u32> {
        if let Some(&id) = self.set_ids.get(&set) {
            return Some(id);
        }
        if self.sets.len() >= MAX_SETS {
            return None;
        }
        let id = u32::try_from(self.sets.len()).ok()?;
        self.sets.push(set);
        self.set_ids.insert(set, id);
        Some(id)
    }
}

impl Default for MatcherBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatcherBuilder")
            .field("names", &self.table.len)
            .field("mask_sets", &self.sets.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Name → lists, for every list of a policy snapshot. Immutable; share it across threads.
#[derive(Default)]
pub struct Matcher {
    table: Table,
    sets: Box<[MaskSet]>,
}

impl Matcher {
    /// Lists that contain `name`: exact entries equal to name, subdomain entries equal to name or
    /// to any parent on a label boundary ("xfacebook.com" is NOT under "facebook.com"), minus
    /// lists whose allow (exception, `@@`) entries cover the name the same way. `name` is
    /// lower-case, no trailing dot.
    pub fn lookup(&self, name: &str) -> ListMask {
        let mut block = ListMask::EMPTY;
        let mut allow = ListMask::EMPTY;
        for (index, suffix) in suffixes(name).enumerate() {
            if let Some(set) = self.get(suffix) {
                if index == 0 {
                    block = block.or(set.exact);
                    allow = allow.or(set.allow_exact);
                }
                block = block.or(set.subtree);
                allow = allow.or(set.allow_subtree);
            }
        }
        block.without(allow)
    }

    /// Every entry that covers `name`, for `metasink explain`: the stored entry text (the suffix
    /// that matched), its list, scope and whether it is an allow entry. Order: most specific
    /// first (the name itself, then each parent); for one stored name, block entries (exact,
    /// then subdomains) before allow entries (exact, then subdomains), lists in index order.
    pub fn explain(&self, name: &str) -> Vec<EntryHit> {
        let mut hits = Vec::new();
        for (index, suffix) in suffixes(name).enumerate() {
            let Some(set) = self.get(suffix) else {
                continue;
            };
            for (scope, allow, mask) in set.kinds(index == 0) {
                hits.extend(mask.iter().map(|list| EntryHit {
                    entry: suffix.to_owned(),
                    list,
                    scope,
                    allow,
                }));
            }
        }
        hits
    }

    /// True when no name is stored.
    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    /// The number of distinct names stored.
    pub fn len(&self) -> usize {
        self.table.len
    }

    /// Resident bytes of the structure: names, slots and mask sets.
    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + std::mem::size_of_val(&*self.sets)
    }

    /// The masks stored for exactly `name`.
    fn get(&self, name: &str) -> Option<MaskSet> {
        let name = name.as_bytes();
        if self.table.tags.is_empty() || name.len() > MAX_STORED_NAME {
            return None;
        }
        let offset = self.table.find(name, self.table.hash(name)).ok()?;
        self.sets.get(self.table.set_id(offset) as usize).copied()
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("names", &self.len())
            .field("mask_sets", &self.sets.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// The slot tag of a hash: its low byte (not the bits that pick the slot), never 0, which
/// marks an empty slot.
fn tag(hash: u64) -> u8 {
    (hash as u8).max(1)
}

/// The first slot to probe: the hash scaled onto `0..slots` (no power-of-two size needed, so
/// the table can be sized to the load it wants).
fn home(hash: u64, slots: usize) -> usize {
    ((u128::from(hash) * slots as u128) >> 64) as usize
}

/// The slots needed to hold `names` at the target load, with at least one left empty so a
/// probe always ends.
fn slots_for(names: usize) -> usize {
    let slots = names.saturating_mul(LOAD_DENOMINATOR) / LOAD_NUMERATOR;
    slots.max(names.saturating_add(1))
}

/// The names and the hash table over them.
#[derive(Default)]
struct Table {
    arena: Vec<u8>,
    tags: Box<[u8]>,
    offsets: Box<[u32]>,
    /// Names stored.
    len: usize,
    /// The seed of the name hash.
    hasher: RandomState,
}

impl Table {
    /// Room for `names` names of about 20 bytes (the average in real lists is 19).
    fn with_capacity(names: usize) -> Self {
        const TYPICAL_RECORD: usize = HEADER + 20;
        // More than u32 offsets can address would never be used.
        let names = names.min(u32::MAX as usize / TYPICAL_RECORD);
        let slots = if names == 0 { 0 } else { slots_for(names) };
        Self {
            arena: Vec::with_capacity(names.saturating_mul(TYPICAL_RECORD)),
            tags: vec![0; slots].into_boxed_slice(),
            offsets: vec![0; slots].into_boxed_slice(),
            len: 0,
            hasher: RandomState::default(),
        }
    }

    /// Makes room for one more name of `name_len` bytes. False when the arena would pass the
    /// 4 GiB that a `u32` offset can address.
    fn reserve_one(&mut self, name_len: usize) -> bool {
        let end = self.arena.len() + HEADER + name_len;
        if u32::try_from(end).is_err() {
            return false;
        }
        if (self.len + 1) * LOAD_DENOMINATOR > self.tags.len() * LOAD_NUMERATOR {
            let names = (self.len * 2).max(MIN_SLOTS * LOAD_NUMERATOR / LOAD_DENOMINATOR);
            self.rehash(slots_for(names));
        }
        true
    }

    /// Gives back what the table does not need: slots down to the target load, spare arena.
    fn fit(&mut self) {
        let wanted = if self.len == 0 {
            0
        } else {
            slots_for(self.len)
        };
        // A table within 1/8 of the right size is left alone: resizing costs a pass over
        // every name for a few percent of the slot arrays.
        if self.tags.len() > wanted + wanted / 8 {
            self.rehash(wanted);
        }
        self.arena.shrink_to_fit();
    }

    /// Rebuilds the slot arrays with `slots` slots, walking the arena in order (sequential
    /// reads) rather than the old slots.
    fn rehash(&mut self, slots: usize) {
        self.tags = vec![0; slots].into_boxed_slice();
        self.offsets = vec![0; slots].into_boxed_slice();
        let mut offset = 0;
        while offset < self.arena.len() {
            let name = self.name_at(offset as u32);
            let (hash, record_len) = (self.hash(name), HEADER + name.len());
            let slot = self.vacant_slot(hash);
            self.tags[slot] = tag(hash);
            self.offsets[slot] = offset as u32;
            offset += record_len;
        }
    }

    fn hash(&self, name: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(name);
        hasher.finish()
    }

    /// The first empty slot on the probe path of `hash` (for names known to be absent).
    fn vacant_slot(&self, hash: u64) -> usize {
        let mut slot = home(hash, self.tags.len());
        while self.tags[slot] != 0 {
            slot = self.next(slot);
        }
        slot
    }

    /// The arena offset of `name`, or the empty slot where it would go. The table must have
    /// slots, one of them empty.
    fn find(&self, name: &[u8], hash: u64) -> Result<u32, usize> {
        let wanted = tag(hash);
        let mut slot = home(hash, self.tags.len());
        loop {
            match self.tags[slot] {
                0 => return Err(slot),
                found if found == wanted && self.name_at(self.offsets[slot]) == name => {
                    return Ok(self.offsets[slot]);
                }
                _ => slot = self.next(slot),
            }
        }
    }

    fn next(&self, slot: usize) -> usize {
        if slot + 1 == self.tags.len() {
            0
        } else {
            slot + 1
        }
    }

    /// Appends a record for `name` and points the empty `slot` at it.
    fn insert(&mut self, slot: usize, name: &[u8], hash: u64, set_id: u32) {
        let offset = self.arena.len() as u32;
        // Names are at most 255 bytes (checked by the builder), so the length fits its byte.
        self.arena.push(name.len() as u8);
        self.arena.extend_from_slice(&set_id.to_le_bytes()[..3]);
        self.arena.extend_from_slice(name);
        self.tags[slot] = tag(hash);
        self.offsets[slot] = offset;
        self.len += 1;
    }

    fn name_at(&self, offset: u32) -> &[u8] {
        let start = offset as usize + HEADER;
        let len = usize::from(self.arena[offset as usize]);
        &self.arena[start..start + len]
    }

    fn set_id(&self, offset: u32) -> u32 {
        let at = offset as usize + 1;
        u32::from_le_bytes([self.arena[at], self.arena[at + 1], self.arena[at + 2], 0])
    }

    fn set_set_id(&mut self, offset: u32, id: u32) {
        let at = offset as usize + 1;
        self.arena[at..at + 3].copy_from_slice(&id.to_le_bytes()[..3]);
    }

    /// Backs the arrays a lookup reads at random with huge pages (see
    /// [`crate::memory::back_with_huge_pages`]): a few TLB entries for the whole table.
    fn back_with_huge_pages(&self) {
        crate::memory::back_with_huge_pages(&self.arena);
        crate::memory::back_with_huge_pages(&self.tags);
        crate::memory::back_with_huge_pages(&self.offsets);
    }

    fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.tags.len() + std::mem::size_of_val(&*self.offsets)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The `VmFlags` of the mapping of this process that holds `address` (Linux only).
    fn mapping_flags(address: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|range| {
                let (start, end) = range.split_once('-')?;
                let start = usize::from_str_radix(start, 16).ok()?;
                Some(start..usize::from_str_radix(end, 16).ok()?)
            });
            if let Some(range) = range.filter(|_| !line.starts_with(char::is_uppercase)) {
                inside = range.contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_owned());
            }
        }
        None
    }

    #[test]
    fn a_big_table_is_marked_for_huge_pages() {
        // The kernel marks a mapping advised MADV_HUGEPAGE with `hg`, whether or not it
        // could collapse it yet; with transparent huge pages off the advice is refused.
        let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !enabled.is_ok_and(|modes| !modes.contains("[never]")) {
            return;
        }
        let names: Vec<String> = (0..300_000)
            .map(|i| format!("name{i}.example.com"))
            .collect();
        let mut builder = MatcherBuilder::new();
        for name in &names {
            builder.add(name, 0, Scope::Subdomains, false);
        }
        let matcher = builder.build();
        let arena = &matcher.table.arena;
        assert!(arena.len() > 4 << 20, "the arena spans a whole huge page");
        let middle = arena.as_ptr() as usize + arena.len() / 2;
        let flags = mapping_flags(middle).expect("the arena's mapping in /proc/self/smaps");
        assert!(
            flags.split(' ').any(|flag| flag == "hg"),
            "VmFlags: {flags}"
        );
        assert_eq!(matcher.lookup("a.name7.example.com"), mask(&[0]));
    }

    fn mask(lists: &[ListIndex]) -> ListMask {
        lists.iter().copied().collect()
    }

    fn matcher(entries: &[(&str, ListIndex, Scope, bool)]) -> Matcher {
        let mut builder = MatcherBuilder::new();
        for &(name, list, scope, allow) in entries {
            builder.add(name, list, scope, allow);
        }
        builder.build()
    }

    #[test]
    fn exact_and_subdomains() {
        let m = matcher(&[
            ("exact.com", 0, Scope::Exact, false),
            ("tree.com", 1, Scope::Subdomains, false),
        ]);
        assert_eq!(m.lookup("exact.com"), mask(&[0]));
        assert_eq!(m.lookup("a.exact.com"), ListMask::EMPTY);
        assert_eq!(m.lookup("tree.com"), mask(&[1]));
        assert_eq!(m.lookup("a.b.tree.com"), mask(&[1]));
        assert_eq!(m.lookup("com"), ListMask::EMPTY);
        assert_eq!(m.lookup("other.com"), ListMask::EMPTY);
    }

    #[test]
    fn label_boundary() {
        let m = matcher(&[("meta.ai", 0, Scope::Subdomains, false)]);
        assert_eq!(m.lookup("meta.ai"), mask(&[0]));
        assert_eq!(m.lookup("www.meta.ai"), mask(&[0]));
        assert_eq!(m.lookup("xmeta.ai"), ListMask::EMPTY);
        assert_eq!(m.lookup("meta.aix"), ListMask::EMPTY);
        assert_eq!(m.lookup("x-meta.ai"), ListMask::EMPTY);
    }

    #[test]
    fn allow_subtracts_only_its_own_list() {
        let m = matcher(&[
            ("facebook.com", 0, Scope::Subdomains, false),
            ("facebook.com", 1, Scope::Subdomains, false),
            ("safe.facebook.com", 1, Scope::Subdomains, true),
            ("exact.facebook.com", 0, Scope::Exact, true),
        ]);
        assert_eq!(m.lookup("facebook.com"), mask(&[0, 1]));
        assert_eq!(m.lookup("safe.facebook.com"), mask(&[0]));
        assert_eq!(m.lookup("x.safe.facebook.com"), mask(&[0]));
        assert_eq!(m.lookup("exact.facebook.com"), mask(&[1]));
        // An exact exception does not cover names below it.
        assert_eq!(m.lookup("x.exact.facebook.com"), mask(&[0, 1]));
    }

    #[test]
    fn one_name_in_several_lists_with_different_scopes() {
        let m = matcher(&[
            ("a.com", 0, Scope::Exact, false),
            ("a.com", 1, Scope::Subdomains, false),
            ("a.com", 2, Scope::Exact, true),
            ("a.com", 3, Scope::Subdomains, false),
            ("a.com", 63, Scope::Exact, false),
        ]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.lookup("a.com"), mask(&[0, 1, 3, 63]));
        assert_eq!(m.lookup("x.a.com"), mask(&[1, 3]));
    }

    #[test]
    fn duplicates_merge() {
        let m = matcher(&[
            ("dup.com", 0, Scope::Exact, false),
            ("dup.com", 0, Scope::Exact, false),
            ("dup.com", 1, Scope::Exact, false),
            ("other.com", 0, Scope::Exact, false),
            ("dup.com", 0, Scope::Exact, false),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.lookup("dup.com"), mask(&[0, 1]));
        assert_eq!(m.explain("dup.com").len(), 2);
    }

    #[test]
    fn explain_lists_every_covering_entry_most_specific_first() {
        let m = matcher(&[
            ("meta.com", 2, Scope::Subdomains, false),
            ("meta.com", 0, Scope::Exact, false),
            ("ai.meta.com", 1, Scope::Exact, false),
            ("ai.meta.com", 3, Scope::Subdomains, true),
            ("ai.meta.com", 0, Scope::Subdomains, false),
        ]);
        let hit = |entry: &str, list, scope, allow| EntryHit {
            entry: entry.to_owned(),
            list,
            scope,
            allow,
        };
        assert_eq!(
            m.explain("ai.meta.com"),
            [
                hit("ai.meta.com", 1, Scope::Exact, false),
                hit("ai.meta.com", 0, Scope::Subdomains, false),
                hit("ai.meta.com", 3, Scope::Subdomains, true),
                hit("meta.com", 2, Scope::Subdomains, false),
            ]
        );
        // The exact entry for meta.com does not cover names below it.
        assert_eq!(
            m.explain("x.ai.meta.com"),
            [
                hit("ai.meta.com", 0, Scope::Subdomains, false),
                hit("ai.meta.com", 3, Scope::Subdomains, true),
                hit("meta.com", 2, Scope::Subdomains, false),
            ]
        );
        assert_eq!(m.explain("unlisted.org"), []);
    }

    #[test]
    fn empty_matcher() {
        for m in [Matcher::default(), MatcherBuilder::new().build()] {
            assert!(m.is_empty());
            assert_eq!(m.len(), 0);
            assert_eq!(m.lookup("a.com"), ListMask::EMPTY);
            assert_eq!(m.explain("a.com"), []);
            assert_eq!(m.lookup(""), ListMask::EMPTY);
        }
    }

    #[test]
    fn odd_names_are_dropped_or_missed_without_panic() {
        let long = "a".repeat(300);
        let mut builder = MatcherBuilder::with_capacity(4);
        builder.add("", 0, Scope::Exact, false);
        builder.add(&long, 0, Scope::Exact, false);
        builder.add("ok.com", 0, Scope::Subdomains, false);
        builder.add("ok.com", 64, Scope::Subdomains, false);
        builder.add("other.com", ListIndex::MAX, Scope::Exact, true);
        let m = builder.build();
        assert_eq!(m.len(), 1);
        for query in [
            "",
            ".",
            "..",
            "ok.com.",
            ".ok.com",
            &long,
            &format!("{long}.ok.com"),
        ] {
            let expected = if query.ends_with("ok.com") {
                mask(&[0])
            } else {
                ListMask::EMPTY
            };
            assert_eq!(m.lookup(query), expected, "{query}");
        }
    }

    #[test]
    fn capacity_is_reserved_and_trimmed() {
        let mut builder = MatcherBuilder::with_capacity(1000);
        builder.add("a.com", 0, Scope::Exact, false);
        let m = builder.build();
        assert!(m.heap_bytes() < 200, "{}", m.heap_bytes());
        assert_eq!(m.lookup("a.com"), mask(&[0]));
    }

    #[test]
    fn matcher_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Matcher>();
    }

    /// Deterministic random names (a fixed seed).
    struct Rng(fastrand::Rng);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0.usize(..n)
        }

        /// Names drawn from few labels, so that parents and duplicates are common.
        fn name(&mut self) -> String {
            const LABELS: [&str; 12] = [
                "a", "b", "ab", "ba", "meta", "xmeta", "ads", "cdn", "com", "net", "x-1", "_t",
            ];
            let labels = 1 + self.below(4);
            (0..labels)
                .map(|_| LABELS[self.below(LABELS.len())])
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    /// The obvious implementation, to check the real one against.
    fn naive_lookup(entries: &HashMap<String, MaskSet>, name: &str) -> ListMask {
        let (mut block, mut allow) = (ListMask::EMPTY, ListMask::EMPTY);
        let labels: Vec<&str> = name.split('.').collect();
        for start in 0..labels.len() {
            let Some(set) = entries.get(&labels[start..].join(".")) else {
                continue;
            };
            if start == 0 {
                block = block.or(set.exact);
                allow = allow.or(set.allow_exact);
            }
            block = block.or(set.subtree);
            allow = allow.or(set.allow_subtree);
        }
        block.without(allow)
    }

    #[test]
    fn agrees_with_a_naive_reference() {
        let mut rng = Rng(fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15));
        let mut reference: HashMap<String, MaskSet> = HashMap::new();
        let mut builder = MatcherBuilder::new();
        for _ in 0..3000 {
            let name = rng.name();
            let list = rng.below(6) as ListIndex;
            let scope = if rng.below(2) == 0 {
                Scope::Exact
            } else {
                Scope::Subdomains
            };
            let allow = rng.below(5) == 0;
            builder.add(&name, list, scope, allow);
            let set = reference.entry(name).or_default();
            *set = set.with(list, scope, allow);
        }
        let m = builder.build();
        assert_eq!(m.len(), reference.len());
        for _ in 0..5000 {
            let query = rng.name();
            assert_eq!(
                m.lookup(&query),
                naive_lookup(&reference, &query),
                "{query}"
            );
        }
        for name in reference.keys() {
            assert_eq!(m.lookup(name), naive_lookup(&reference, name), "{name}");
        }
    }
}
