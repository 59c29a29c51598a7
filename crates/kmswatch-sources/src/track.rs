//! In-order acknowledgement tracking: a position may be committed only when every message
//! before it has been acknowledged (Kafka offsets per partition, file offsets per file).

use std::collections::BTreeMap;

/// Tracks handed-out positions of one ordered stream and the contiguous acknowledged prefix.
///
/// Positions are the start of each message; `end` is the position just after it (Kafka:
/// `offset + 1`; files: the byte after the chunk). The commit point is the end of the last
/// message of the longest acknowledged prefix.
#[derive(Debug, Default, Clone)]
pub struct Contiguous {
    /// start -> (end, acked)
    outstanding: BTreeMap<i64, (i64, bool)>,
    /// Position up to which everything handed out was acknowledged.
    floor: Option<i64>,
}

impl Contiguous {
    /// A tracker whose already-committed position is `floor`.
    pub fn starting_at(floor: i64) -> Self {
        Self {
            outstanding: BTreeMap::new(),
            floor: Some(floor),
        }
    }

    /// A message spanning `start..end` was handed out.
    pub fn handed_out(&mut self, start: i64, end: i64) {
        self.outstanding.insert(start, (end, false));
    }

    /// The message at `start` was acknowledged (or moved past). Returns the new commit point
    /// when it advanced.
    pub fn acked(&mut self, start: i64) -> Option<i64> {
        if let Some(e) = self.outstanding.get_mut(&start) {
            e.1 = true;
        }
        let before = self.floor;
        while let Some(entry) = self.outstanding.first_entry() {
            if !entry.get().1 {
                break;
            }
            let (end, _) = entry.remove();
            self.floor = Some(end);
        }
        (self.floor != before).then_some(self.floor).flatten()
    }

    /// The position everything before which has been acknowledged.
    pub fn commit_point(&self) -> Option<i64> {
        self.floor
    }

    /// Number of handed-out, unsettled-in-order messages.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = Contiguous::default();
        for o in 0..5 {
            t.handed_out(o, o + 1);
        }
        assert_eq!(t.acked(1), None);
        assert_eq!(t.acked(3), None);
        assert_eq!(t.commit_point(), None);
        assert_eq!(t.acked(0), Some(2));
        assert_eq!(t.acked(2), Some(4));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.acked(4), Some(5));
        assert_eq!(t.acked(4), None);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut t = Contiguous::starting_at(10);
        t.handed_out(10, 11);
        t.handed_out(15, 16);
        assert_eq!(t.acked(15), None);
        assert_eq!(t.commit_point(), Some(10));
        assert_eq!(t.acked(10), Some(16));
    }
}
