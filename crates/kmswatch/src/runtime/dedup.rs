//! Event de-duplication by native id (`metadata.uid`) within a TTL.
//!
//! A redelivered S3 object (an SQS message seen twice), a duplicated Kafka message or two
//! overlapping backfills yield the same events again; each is processed once. Ids are hashed
//! (SHA-256, first 128 bits) with the provider, so equal ids from different clouds never
//! collide. The set is bounded by the TTL and by a maximum size (oldest forgotten first), and
//! its changes are written with every checkpoint.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};

/// Stored rows: (id, expiry epoch ms).
pub type Rows = Vec<(u128, u64)>;

/// The dedup set.
#[derive(Debug)]
pub struct Dedup {
    seen: HashMap<u128, u64>,
    order: VecDeque<(u64, u128)>,
    ttl_ms: u64,
    max: usize,
    inserted: Vec<(u128, u64)>,
    removed: Vec<(u128, u64)>,
}

/// The id of an event: provider + native id.
pub fn event_key(provider: &str, uid: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(provider.as_bytes());
    h.update([0u8]);
    h.update(uid.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    u128::from_le_bytes(b)
}

impl Dedup {
    /// An empty set.
    pub fn new(ttl_secs: u64, max: usize) -> Dedup {
        Dedup {
            seen: HashMap::new(),
            order: VecDeque::new(),
            ttl_ms: ttl_secs.saturating_mul(1000),
            max: max.max(1),
            inserted: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Restore entries from the store (expired ones are dropped at the next `expire`).
    pub fn restore(&mut self, mut entries: Vec<(u128, u64)>) {
        entries.sort_by_key(|e| e.1);
        for (k, exp) in entries {
            self.seen.insert(k, exp);
            self.order.push_back((exp, k));
        }
    }

    /// True the first time `key` is seen within the TTL (then it is remembered).
    pub fn first_time(&mut self, key: u128, now_ms: u64) -> bool {
        if let Some(exp) = self.seen.get(&key) {
            if *exp > now_ms {
                return false;
            }
        }
        let exp = now_ms.saturating_add(self.ttl_ms);
        self.seen.insert(key, exp);
        self.order.push_back((exp, key));
        self.inserted.push((key, exp));
        while self.seen.len() > self.max {
            if !self.pop_oldest() {
                break;
            }
        }
        true
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((exp, k)) = self.order.pop_front() else {
            return false;
        };
        // An id re-inserted later has a newer expiry: only the latest entry counts. The stored
        // row (key, expiry) goes either way.
        if self.seen.get(&k) == Some(&exp) {
            self.seen.remove(&k);
        }
        self.removed.push((k, exp));
        true
    }

    /// Forget ids whose TTL has passed.
    pub fn expire(&mut self, now_ms: u64) {
        while self.order.front().is_some_and(|(exp, _)| *exp <= now_ms) {
            self.pop_oldest();
        }
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// The changes since the last call: rows (id, expiry) inserted and removed. A row inserted
    /// and removed within one delta appears in neither.
    pub fn take_delta(&mut self) -> (Rows, Rows) {
        let mut ins = std::mem::take(&mut self.inserted);
        let mut rem = std::mem::take(&mut self.removed);
        if !ins.is_empty() && !rem.is_empty() {
            let added: HashSet<(u128, u64)> = ins.iter().copied().collect();
            let gone: HashSet<(u128, u64)> = rem.iter().copied().collect();
            ins.retain(|r| !gone.contains(r));
            rem.retain(|r| !added.contains(r));
        }
        (ins, rem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_within_ttl_then_again_after() {
        let mut d = Dedup::new(10, 100);
        let k = event_key("AWS", "e1");
        assert!(d.first_time(k, 1_000));
        assert!(!d.first_time(k, 5_000));
        d.expire(11_001);
        assert_eq!(d.len(), 0);
        assert!(d.first_time(k, 11_001));
        assert_ne!(event_key("AWS", "e1"), event_key("GCP", "e1"));
    }

    #[test]
    fn bounded_and_delta_tracks_changes() {
        let mut d = Dedup::new(3600, 2);
        for i in 0..3u128 {
            assert!(d.first_time(i, 1));
        }
        assert_eq!(d.len(), 2);
        let (ins, rem) = d.take_delta();
        // Id 0 came and went within the delta: the store never needs to hear of it.
        assert!(rem.is_empty());
        assert_eq!(ins.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(d.first_time(3, 2));
        let (ins2, rem2) = d.take_delta();
        assert_eq!(ins2.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3]);
        assert_eq!(rem2, vec![ins[0]]);
        let mut r = Dedup::new(3600, 10);
        r.restore(ins);
        assert!(!r.first_time(1, 2));
        assert!(r.first_time(0, 2));
    }
}
