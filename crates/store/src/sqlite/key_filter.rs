//! A scalable Bloom filter over dedup keys `(sensor_id, message_id)`.
//!
//! It answers "certainly never stored" for almost every fresh key without touching SQLite;
//! "maybe stored" sends the append path to the unique index. A false positive costs one
//! index look-up, never a wrong answer. When the newest layer is full, a layer twice as large
//! is added, so the false-positive rate stays bounded as the store grows.

use std::hash::{BuildHasher, Hasher};

const BITS_PER_KEY: usize = 10; // ~1% false positives with 7 probes
const PROBES: u64 = 7;
const FIRST_CAPACITY: usize = 1 << 20;

struct Layer {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        let words = (capacity * BITS_PER_KEY).div_ceil(64).max(1);
        Layer {
            bits: vec![0; words],
            capacity,
            len: 0,
        }
    }

    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let total = (self.bits.len() * 64) as u64;
        let (first, second) = (hash, hash.rotate_left(32) | 1);
        (0..PROBES)
            .map(move |probe| (first.wrapping_add(probe.wrapping_mul(second)) % total) as usize)
    }

    fn insert(&mut self, hash: u64) {
        let positions: Vec<usize> = self.positions(hash).collect();
        for position in positions {
            self.bits[position / 64] |= 1 << (position % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|position| self.bits[position / 64] & (1 << (position % 64)) != 0)
    }
}

pub(crate) struct KeyFilter {
    layers: Vec<Layer>,
    hasher: std::collections::hash_map::RandomState,
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
