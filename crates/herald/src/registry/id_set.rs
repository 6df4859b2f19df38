//! The ids of the streams that share one index key.
//!
//! Most keys name one stream or a handful: an account, a session and a
//! token each hold as many streams as their caps allow, which is few. A
//! `HashSet<u64>` costs 48 bytes inline plus a 64-byte table for a single
//! id, and with one such set per account and per token that was the
//! largest part of an idle stream's index cost. So one id is kept inline,
//! a few in a short vector, and only a key shared by many streams (a
//! tenant, a popular topic, or a token id that several issuers happen to
//! reuse) pays for a hash set, which keeps removal O(1) however large it
//! grows.

use std::collections::HashSet;

/// Past this many ids, a vector's linear removal gives way to a hash set.
const FEW: usize = 16;

/// A set of stream ids, small when it is small.
#[derive(Debug)]
pub enum IdSet {
    /// Exactly one id, the common case.
    One(u64),
    /// Up to [`FEW`] ids, unordered.
    Few(Vec<u64>),
    /// Many ids (boxed, so the common cases stay three words).
    #[allow(clippy::box_collection, reason = "an unboxed set would double every key's size")]
    Many(Box<HashSet<u64>>),
}

impl IdSet {
    /// A set holding `id`.
    pub fn new(id: u64) -> IdSet {
        IdSet::One(id)
    }

    /// Adds `id`; adding it again changes nothing (a stream that names
    /// one topic twice is indexed under it once).
    pub fn insert(&mut self, id: u64) {
        if self.contains(id) {
            return;
        }
        match self {
            IdSet::One(first) => *self = IdSet::Few(vec![*first, id]),
            IdSet::Few(ids) if ids.len() < FEW => ids.push(id),
            IdSet::Few(ids) => {
                let mut set: HashSet<u64> = ids.drain(..).collect();
                set.insert(id);
                *self = IdSet::Many(Box::new(set));
            }
            IdSet::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; `true` when the set is now empty (the caller drops
    /// the key).
    pub fn remove(&mut self, id: u64) -> bool {
        match self {
            IdSet::One(only) => *only == id,
            IdSet::Few(ids) => {
                if let Some(at) = ids.iter().position(|x| *x == id) {
                    ids.swap_remove(at);
                }
                ids.is_empty()
            }
            IdSet::Many(set) => {
                set.remove(&id);
                set.is_empty()
            }
        }
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        match self {
            IdSet::One(only) => *only == id,
            IdSet::Few(ids) => ids.contains(&id),
            IdSet::Many(set) => set.contains(&id),
        }
    }

    /// How many ids the set holds.
    pub fn len(&self) -> usize {
        match self {
            IdSet::One(_) => 1,
            IdSet::Few(ids) => ids.len(),
            IdSet::Many(set) => set.len(),
        }
    }

    /// The ids, in no particular order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            IdSet::One(id) => Iter::Slice(std::slice::from_ref(id).iter()),
            IdSet::Few(ids) => Iter::Slice(ids.iter()),
            IdSet::Many(set) => Iter::Set(set.iter()),
        }
    }
}

/// Iterator over an [`IdSet`].
pub enum Iter<'a> {
    /// One or a few ids.
    Slice(std::slice::Iter<'a, u64>),
    /// Many ids.
    Set(std::collections::hash_set::Iter<'a, u64>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a u64;

    fn next(&mut self) -> Option<&'a u64> {
        match self {
            Iter::Slice(it) => it.next(),
            Iter::Set(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Slice(it) => it.size_hint(),
            Iter::Set(it) => it.size_hint(),
        }
    }
}

impl<'a> IntoIterator for &'a IdSet {
    type Item = &'a u64;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stays_three_words() {
        assert_eq!(std::mem::size_of::<IdSet>(), 24);
    }

    proptest! {
        /// Any sequence of inserts and removals leaves exactly the ids a
        /// `HashSet` would hold, and reports empty exactly when it is.
        #[test]
        fn behaves_like_a_set(ops in prop::collection::vec((any::<bool>(), 0u64..40), 1..200)) {
            let mut model: HashSet<u64> = HashSet::new();
            let mut set: Option<IdSet> = None;
            for (add, id) in ops {
                if add {
                    // Inserting an id already there must change nothing.
                    model.insert(id);
                    match &mut set {
                        Some(s) => s.insert(id),
                        None => set = Some(IdSet::new(id)),
                    }
                } else if model.remove(&id) {
                    let empty = set.as_mut().map(|s| s.remove(id));
                    prop_assert_eq!(empty, Some(model.is_empty()));
                    if model.is_empty() {
                        set = None;
                    }
                }
                let got: HashSet<u64> = set.iter().flat_map(|s| s.iter().copied()).collect();
                prop_assert_eq!(&got, &model);
                for id in 0..40 {
                    prop_assert_eq!(set.as_ref().is_some_and(|s| s.contains(id)), model.contains(&id));
                }
            }
        }
    }
}
