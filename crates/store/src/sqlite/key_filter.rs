//! A scalable Bloom filter over dedup keys `(sensor_id, message_id)`, by their stored
//! 64-bit key (dedup.rs).
//!
//! It answers "certainly never stored" for almost every fresh key without touching SQLite;
//! "maybe stored" sends the append path to the unique index. A false positive costs one
//! index look-up, never a wrong answer. When the newest layer is full, a layer twice as large
//! is added, so the false-positive rate stays bounded as the store grows.

use super::dedup::mix;

const BITS_PER_KEY: usize = 10; // ~1% false positives with 7 probes
const PROBES: u32 = 7;
const FIRST_CAPACITY: usize = 1 << 20;
/// A key's probes all fall in one block of 512 bits, one cache line: an insert or a look-up
/// costs one cache miss per layer instead of one per probe (a "blocked" Bloom filter; at 10
/// bits per key its false-positive rate is ~1.2 % instead of ~0.8 %).
const BLOCK_WORDS: usize = 8;

struct Layer {
    /// `BLOCK_WORDS` words per block.
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(64 * BLOCK_WORDS).max(1);
        Layer {
            bits: vec![0; blocks * BLOCK_WORDS],
            capacity,
            len: 0,
        }
    }

    /// The key's block (first word index) and its `PROBES` bit positions inside it, 9 bits
    /// each from a second mix of the hash (the block comes from its high bits).
    fn probes(&self, hash: u64) -> (usize, impl Iterator<Item = usize> + use<>) {
        let blocks = (self.bits.len() / BLOCK_WORDS) as u128;
        let block = ((u128::from(hash) * blocks) >> 64) as usize * BLOCK_WORDS;
        let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (
            block,
            (0..PROBES).map(move |probe| ((mixed >> (probe * 9)) & 511) as usize),
        )
    }

    fn insert(&mut self, hash: u64) {
        let (block, probes) = self.probes(hash);
        let block = &mut self.bits[block..block + BLOCK_WORDS];
        for bit in probes {
            block[bit / 64] |= 1 << (bit % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (block, mut probes) = self.probes(hash);
        let block = &self.bits[block..block + BLOCK_WORDS];
        probes.all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

pub(crate) struct KeyFilter {
    layers: Vec<Layer>,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            layers: vec![Layer::new(FIRST_CAPACITY)],
        }
    }
}

impl KeyFilter {
    /// The stored keys of one sensor share their top bits (dedup.rs): mixed again, they
    /// spread over every block.
    fn hash(key: i64) -> u64 {
        mix(key as u64)
    }

    /// Adds a dedup key, as [`key_of`](super::dedup::key_of) makes it.
    pub fn insert(&mut self, key: i64) {
        let hash = Self::hash(key);
        let full = self
            .layers
            .last()
            .is_none_or(|layer| layer.len >= layer.capacity);
        if full {
            let capacity = self
                .layers
                .last()
                .map_or(FIRST_CAPACITY, |layer| layer.capacity * 2);
            self.layers.push(Layer::new(capacity));
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(hash);
        }
    }

    /// False means the key was certainly never inserted.
    pub fn may_contain(&self, key: i64) -> bool {
        let hash = Self::hash(key);
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::dedup::key_of;

    #[test]
    fn every_inserted_key_is_reported_as_maybe_present() {
        let mut filter = KeyFilter::default();
        for index in 0..10_000 {
            filter.insert(key_of("sensor", &format!("m{index}")));
        }
        assert!(
            (0..10_000).all(|index| filter.may_contain(key_of("sensor", &format!("m{index}"))))
        );
    }

    #[test]
    fn most_absent_keys_are_reported_absent() {
        let mut filter = KeyFilter::default();
        for index in 0..100_000 {
            filter.insert(key_of("sensor", &format!("m{index}")));
        }
        let false_positives = (0..100_000)
            .filter(|index| filter.may_contain(key_of("other", &format!("m{index}"))))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100,000"
        );
    }

    #[test]
    fn a_full_layer_grows_a_larger_one_and_keeps_old_keys() {
        let mut filter = KeyFilter {
            layers: vec![Layer::new(100)],
        };
        for index in 0..1_000 {
            filter.insert(key_of("s", &index.to_string()));
        }
        assert!(filter.layers.len() > 1);
        assert!((0..1_000).all(|index| filter.may_contain(key_of("s", &index.to_string()))));
    }
}
