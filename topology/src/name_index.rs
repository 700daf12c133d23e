//! [`NameIndex`]: where each name sits in a list of names, without copying the names.
//!
//! Validation and planning look names up several times per member. A `HashMap<String, usize>`
//! costs one allocation per name and SipHash per lookup; at thousands of members those
//! allocations and the cache misses behind them dominated the profile. The index here stores
//! only positions (4 bytes a slot) and compares against the caller's list, and hashes with a
//! cheap multiplicative hash ([`NameHasher`]). Flooding it with colliding names only slows that
//! one validation down; the names come from the topology's own author and its Clusters.

use std::hash::{BuildHasherDefault, Hasher};

/// An empty slot.
const EMPTY: u32 = u32::MAX;

/// Open-addressing table from name to position in a list the caller keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameIndex {
    slots: Box<[u32]>,
    /// Occupied slots; at least one stays empty so that every probe ends.
    len: usize,
    /// `64 - log2(slots.len())`: the top bits of a hash pick the first slot.
    shift: u32,
}

impl NameIndex {
    /// An index able to hold `n` names (at most half full, so probes stay short).
    pub(crate) fn with_capacity(n: usize) -> NameIndex {
        let len = (2 * n).next_power_of_two().max(2);
        NameIndex {
            slots: vec![EMPTY; len].into_boxed_slice(),
            len: 0,
            shift: 64 - len.trailing_zeros(),
        }
    }

    /// Indexes `names` by position; for a repeated name the first position wins.
    #[cfg(test)]
    fn of<S: AsRef<str>>(names: &[S]) -> NameIndex {
        let mut index = NameIndex::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            index.insert(name.as_ref(), i, |j| names[j].as_ref());
        }
        index
    }

    /// Records that `name` is at `position`, unless it is already indexed: then returns the
    /// earlier position and changes nothing. `name_at` gives the name at an indexed position.
    pub(crate) fn insert<'a>(
        &mut self,
        name: &str,
        position: usize,
        name_at: impl Fn(usize) -> &'a str,
    ) -> Option<usize> {
        let slot = match self.find(name, &name_at) {
            Ok(found) => return Some(found),
            Err(slot) => slot,
        };
        assert!(self.len + 1 < self.slots.len(), "NameIndex over capacity");
        self.slots[slot] = u32::try_from(position).expect("fewer than 2^32 names");
        self.len += 1;
        None
    }

    /// The position of `name`, if indexed.
    pub(crate) fn get<'a>(&self, name: &str, name_at: impl Fn(usize) -> &'a str) -> Option<usize> {
        self.find(name, &name_at).ok()
    }

    /// `Ok(position)` of `name`, or `Err(slot)`: the empty slot where it would go.
    fn find<'a>(&self, name: &str, name_at: &impl Fn(usize) -> &'a str) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut slot = (hash(name.as_bytes()) >> self.shift) as usize;
        loop {
            match self.slots[slot] {
                EMPTY => return Err(slot),
                at if name_at(at as usize) == name => return Ok(at as usize),
                _ => slot = (slot + 1) & mask,
            }
        }
    }
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Eight bytes at a time: rotate, xor, multiply. Good spread in the top bits, which is where
/// [`NameIndex`] takes its slot from.
fn mix(state: u64, bytes: &[u8]) -> u64 {
    let mut h = state;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    h
}

fn hash(bytes: &[u8]) -> u64 {
    mix(bytes.len() as u64, bytes)
}

/// The same hash for `std` maps and sets keyed by names (or tuples of them).
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = mix(self.0 ^ bytes.len() as u64, bytes);
    }

    fn finish(&self) -> u64 {
        // hashbrown picks buckets from the low bits and tags from the top 7: fold both in.
        let h = self.0.wrapping_mul(SEED);
        h ^ (h >> 32)
    }
}

pub(crate) type NameHashBuilder = BuildHasherDefault<NameHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_and_only_those() {
        let names: Vec<String> = (0..1000).map(|i| format!("pg16-r{i}")).collect();
        let index = NameIndex::of(&names);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(index.get(name, |j| &names[j]), Some(i));
        }
        for absent in [
            "",
            "pg16-r1000",
            "pg16-r",
            "pg16-r01",
            "a-name-longer-than-eight",
        ] {
            assert_eq!(index.get(absent, |j| &names[j]), None, "{absent}");
        }
    }

    #[test]
    fn a_repeated_name_keeps_its_first_position() {
        let names = ["a", "b", "a", "c", "b"];
        let mut index = NameIndex::with_capacity(names.len());
        let earlier: Vec<Option<usize>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| index.insert(n, i, |j| names[j]))
            .collect();
        assert_eq!(earlier, [None, None, Some(0), None, Some(1)]);
        assert_eq!(index.get("b", |j| names[j]), Some(1));
    }

    #[test]
    fn an_empty_list_finds_nothing() {
        let names: [&str; 0] = [];
        assert_eq!(NameIndex::of(&names).get("a", |j| names[j]), None);
    }
}
