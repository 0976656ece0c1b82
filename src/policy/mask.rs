//! `ListMask`: the set of lists (by index) a name belongs to, and the profile masks it is tested
//! against.
//!
//! Every list in a policy snapshot gets one bit, so "which lists contain this name" and "which
//! lists does this profile block" are both one word, and a decision is one AND. Sixty-four lists
//! are plenty for a household (the bundled catalogue uses about fifteen); config validation
//! refuses more.

/// Index of a list inside one policy snapshot (its bit in a [`ListMask`]).
pub type ListIndex = u8;

pub use crate::config::MAX_LISTS;

// One bit per list in a `u64`.
const _: () = assert!(MAX_LISTS == u64::BITS as usize);

/// A set of list indexes, one bit per list.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
pub struct ListMask(pub u64);

impl ListMask {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// The set holding only `index`.
    pub fn single(index: ListIndex) -> Self {
        debug_assert!((index as usize) < MAX_LISTS);
        Self(1u64 << index)
    }

    /// True when no list is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when `index` is in the set.
    pub fn contains(self, index: ListIndex) -> bool {
        self.0 & (1u64 << index) != 0
    }

    /// Lists in both sets.
    pub fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Lists in either set.
    pub fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Lists in `self` but not in `other`.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The lowest list index in the set, if any (the list named in a block reason).
    pub fn first(self) -> Option<ListIndex> {
        (!self.is_empty()).then(|| self.0.trailing_zeros() as ListIndex)
    }

    /// Every list index in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = ListIndex> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let index = (bits != 0).then(|| bits.trailing_zeros() as ListIndex)?;
            bits &= bits - 1;
            Some(index)
        })
    }
}

impl FromIterator<ListIndex> for ListMask {
    fn from_iter<I: IntoIterator<Item = ListIndex>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Self::EMPTY, |mask, index| mask.or(Self::single(index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a: ListMask = [0, 3, 63].into_iter().collect();
        let b: ListMask = [3, 5].into_iter().collect();
        assert_eq!(a.and(b), ListMask::single(3));
        assert_eq!(a.without(b).iter().collect::<Vec<_>>(), vec![0, 63]);
        assert_eq!(a.or(b).iter().count(), 4);
        assert_eq!(b.first(), Some(3));
        assert!(ListMask::EMPTY.first().is_none());
        assert!(a.contains(63) && !a.contains(62));
    }
}
