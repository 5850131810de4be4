//! Per-partition commit points for a consumer that finishes records out of order (the saga
//! handles messages independently): the offset committed for a partition is its oldest record
//! read and not finished, or the next one after everything read when all are finished. A crash
//! or a rebalance then re-delivers unfinished records only, never skips one.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct Progress {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offsets read and not finished.
    open: BTreeSet<i64>,
    /// The offset after the last one read.
    read_to: i64,
    /// The commit point last handed out by [`Progress::moved`].
    committed: Option<i64>,
}

impl Partition {
    fn commit_point(&self) -> i64 {
        self.open.first().copied().unwrap_or(self.read_to)
    }
}

impl Progress {
    /// A record was read (offsets of a partition come in increasing order).
    pub fn read(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.open.insert(offset);
        p.read_to = p.read_to.max(offset + 1);
    }

    /// A record read earlier is finished.
    pub fn finished(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.open.remove(&offset);
        }
    }

    /// The commit points that moved since the last call: `(partition, next offset to read)`.
    pub fn moved(&mut self) -> Vec<(i32, i64)> {
        let mut moved = Vec::new();
        for (&partition, p) in &mut self.partitions {
            let point = p.commit_point();
            if p.committed != Some(point) {
                p.committed = Some(point);
                moved.push((partition, point));
            }
        }
        moved.sort_unstable();
        moved
    }

    /// Forgets a partition given away (revoked); its commit point, when anything was read.
    pub fn release(&mut self, partition: i32) -> Option<(i32, i64)> {
        self.partitions
            .remove(&partition)
            .map(|p| (partition, p.commit_point()))
    }

    /// Records read and not finished, over every partition.
    pub fn open(&self) -> usize {
        self.partitions.values().map(|p| p.open.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_point_waits_for_the_oldest_unfinished_record() {
        let mut p = Progress::default();
        for offset in 10..15 {
            p.read(0, offset);
        }
        p.read(1, 3);
        assert_eq!(p.moved(), vec![(0, 10), (1, 3)]);
        // Finished out of order: 11 and 12 done, 10 still running.
        p.finished(0, 11);
        p.finished(0, 12);
        assert_eq!(p.moved(), vec![], "nothing passes offset 10");
        p.finished(0, 10);
        assert_eq!(p.moved(), vec![(0, 13)]);
        p.finished(0, 13);
        p.finished(0, 14);
        p.finished(1, 3);
        assert_eq!(
            p.moved(),
            vec![(0, 15), (1, 4)],
            "everything read is finished"
        );
        assert_eq!(p.moved(), vec![], "nothing moved since");
        assert_eq!(p.open(), 0);
    }

    #[test]
    fn a_released_partition_gives_its_point_and_is_forgotten() {
        let mut p = Progress::default();
        p.read(2, 5);
        p.read(2, 6);
        p.finished(2, 6);
        assert_eq!(
            p.release(2),
            Some((2, 5)),
            "record 5 goes to the next owner"
        );
        assert_eq!(p.release(2), None);
        assert_eq!(p.moved(), vec![]);
        // Read again after it came back: starts over from what is read now.
        p.read(2, 5);
        assert_eq!(p.moved(), vec![(2, 5)]);
    }
}
