//! A scalable Bloom filter over dedup keys `(sensor_id, message_id)`.
//!
//! It answers "certainly never stored" for almost every fresh key without touching SQLite;
//! "maybe stored" sends the append path to the unique index. A false positive costs one
//! index look-up, never a wrong answer. When the newest layer is full, a layer twice as large
//! is added, so the false-positive rate stays bounded as the store grows.

use std::hash::{BuildHasher, Hasher};

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
    hasher: foldhash::quality::RandomState,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            layers: vec![Layer::new(FIRST_CAPACITY)],
            hasher: Default::default(),
        }
    }
}

impl KeyFilter {
    fn hash(&self, sensor: &str, message: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(sensor.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(message.as_bytes());
        hasher.finish()
    }

    pub fn insert(&mut self, sensor: &str, message: &str) {
        let hash = self.hash(sensor, message);
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
    pub fn may_contain(&self, sensor: &str, message: &str) -> bool {
        let hash = self.hash(sensor, message);
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_is_reported_as_maybe_present() {
        let mut filter = KeyFilter::default();
        for index in 0..10_000 {
            filter.insert("sensor", &format!("m{index}"));
        }
        assert!((0..10_000).all(|index| filter.may_contain("sensor", &format!("m{index}"))));
    }

    #[test]
    fn most_absent_keys_are_reported_absent() {
        let mut filter = KeyFilter::default();
        for index in 0..100_000 {
            filter.insert("sensor", &format!("m{index}"));
        }
        let false_positives = (0..100_000)
            .filter(|index| filter.may_contain("other", &format!("m{index}")))
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
            hasher: Default::default(),
        };
        for index in 0..1_000 {
            filter.insert("s", &index.to_string());
        }
        assert!(filter.layers.len() > 1);
        assert!((0..1_000).all(|index| filter.may_contain("s", &index.to_string())));
    }
}
