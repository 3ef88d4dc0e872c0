//! The read-ahead planner: decides, per read, whether a file is being scanned
//! sequentially (then whole chunks of `chunk` bytes are fetched, `depth` of them in
//! flight ahead of the reader) or accessed at random (then exactly the bytes asked
//! for are fetched). Pure logic, no I/O: the reader in `fs` executes the plan.
//!
//! TensorFlow's TFRecord reader asks for 256 KiB at a time on schemes it does not
//! know; one GET per 256 KiB would be latency-bound. Memory stays bounded: the
//! reader holds at most `depth` chunks (plus the ones a single oversized read
//! needs) and drops every chunk behind the current read.

use std::ops::Range;

/// What the reader should do for one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to read: zero-length read, or at/after the end of the file.
    Nothing,
    /// Fetch exactly this byte range.
    Exact(Range<u64>),
    /// Copy out of these chunks (indices), fetching whichever are not held yet; start
    /// fetching `prefetch` too, and drop every chunk below `needed.start`.
    Chunks {
        /// Chunks the read covers.
        needed: Range<u64>,
        /// Chunks to start fetching ahead of the reader.
        prefetch: Range<u64>,
    },
}

/// Per-file planner state.
#[derive(Debug, Clone)]
pub struct Planner {
    /// Size of the first chunk; each next one doubles until `chunk`.
    first: u64,
    chunk: u64,
    /// Index of the first full-size chunk, and where it starts.
    ramp_chunks: u64,
    ramp_end: u64,
    depth: u64,
    size: u64,
    next_expected: Option<u64>,
    sequential: bool,
}

impl Planner {
    /// A planner for a file of `size` bytes, fetching `chunk`-byte ranges with up to
    /// `depth` chunks ahead when sequential.
    pub fn new(size: u64, chunk: u64, depth: u64) -> Planner {
        Planner::with_ramp(size, chunk, chunk, depth)
    }

    /// Like [`Planner::new`], but a scan starts with a chunk of `first` bytes and
    /// doubles up to `chunk`: the reader gets its first bytes after a small GET
    /// instead of waiting for a whole `chunk`.
    pub fn with_ramp(size: u64, first: u64, chunk: u64, depth: u64) -> Planner {
        let chunk = chunk.max(1);
        let first = first.clamp(1, chunk);
        let (mut ramp_chunks, mut ramp_end) = (0, 0);
        while (first << ramp_chunks) < chunk {
            ramp_end += first << ramp_chunks;
            ramp_chunks += 1;
        }
        Planner {
            first,
            chunk,
            ramp_chunks,
            ramp_end,
            depth: depth.max(1),
            size,
            next_expected: None,
            sequential: false,
        }
    }

    /// The file size this planner was made for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Byte range of chunk `index`, clipped to the file.
    pub fn chunk_range(&self, index: u64) -> Range<u64> {
        let (start, len) = if index < self.ramp_chunks {
            (self.first * ((1 << index) - 1), self.first << index)
        } else {
            (
                self.ramp_end + (index - self.ramp_chunks) * self.chunk,
                self.chunk,
            )
        };
        start.min(self.size)..(start + len).min(self.size)
    }

    /// The chunk holding byte `offset`.
    fn chunk_of(&self, offset: u64) -> u64 {
        if offset >= self.ramp_end {
            return self.ramp_chunks + (offset - self.ramp_end) / self.chunk;
        }
        (0..self.ramp_chunks)
            .find(|&i| offset < self.first * ((2 << i) - 1))
            .unwrap_or(self.ramp_chunks)
    }

    /// Plans a read of `len` bytes at `offset`, and records it for the next decision.
    pub fn plan(&mut self, offset: u64, len: u64) -> Plan {
        if len == 0 || offset >= self.size {
            return Plan::Nothing;
        }
        let end = offset.saturating_add(len).min(self.size);
        // Sequential: the first read starts at 0, or a read continues where the last
        // one ended. A read that jumps elsewhere switches to exact ranges until the
        // reader is sequential again.
        self.sequential = match self.next_expected {
            None => offset == 0,
            Some(expected) => offset == expected,
        };
        self.next_expected = Some(end);
        if !self.sequential {
            return Plan::Exact(offset..end);
        }
        let first = self.chunk_of(offset);
        let last = self.chunk_of(end - 1);
        let chunks = self.chunk_of(self.size - 1) + 1;
        let ahead_end = (first + self.depth).min(chunks).max(last + 1);
        Plan::Chunks {
            needed: first..last + 1,
            prefetch: last + 1..ahead_end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_sequential_scan_reads_whole_chunks_ahead() {
        let mut p = Planner::new(100 * MIB, 8 * MIB, 4);
        assert_eq!(
            p.plan(0, 256 * 1024),
            Plan::Chunks {
                needed: 0..1,
                prefetch: 1..4
            }
        );
        // The next 256 KiB continues the scan: same chunk, same window.
        assert_eq!(
            p.plan(256 * 1024, 256 * 1024),
            Plan::Chunks {
                needed: 0..1,
                prefetch: 1..4
            }
        );
        // Crossing into chunk 1 moves the window.
        assert_eq!(
            p.plan(512 * 1024, 8 * MIB),
            Plan::Chunks {
                needed: 0..2,
                prefetch: 2..4
            }
        );
    }

    #[test]
    fn a_jump_falls_back_to_exact_ranges_then_recovers() {
        let mut p = Planner::new(100 * MIB, 8 * MIB, 4);
        p.plan(0, 100);
        assert_eq!(p.plan(50 * MIB, 100), Plan::Exact(50 * MIB..50 * MIB + 100));
        // Continuing from there is sequential again.
        assert!(matches!(p.plan(50 * MIB + 100, 100), Plan::Chunks { .. }));
    }

    #[test]
    fn a_first_read_elsewhere_is_random_access() {
        let mut p = Planner::new(10 * MIB, MIB, 4);
        assert_eq!(p.plan(5 * MIB, 10), Plan::Exact(5 * MIB..5 * MIB + 10));
    }

    #[test]
    fn a_ramp_starts_small_and_doubles_to_the_chunk_size() {
        let mut p = Planner::with_ramp(100 * MIB, MIB, 8 * MIB, 4);
        assert_eq!(p.chunk_range(0), 0..MIB);
        assert_eq!(p.chunk_range(1), MIB..3 * MIB);
        assert_eq!(p.chunk_range(2), 3 * MIB..7 * MIB);
        assert_eq!(p.chunk_range(3), 7 * MIB..15 * MIB);
        assert_eq!(p.chunk_range(4), 15 * MIB..23 * MIB);
        // Chunks tile the file: every byte belongs to the chunk whose range holds it.
        for offset in [
            0,
            MIB - 1,
            MIB,
            3 * MIB - 1,
            3 * MIB,
            7 * MIB,
            15 * MIB - 1,
            15 * MIB,
            99 * MIB,
        ] {
            assert!(
                p.chunk_range(p.chunk_of(offset)).contains(&offset),
                "{offset}"
            );
        }
        assert_eq!(
            p.plan(0, 256 * 1024),
            Plan::Chunks {
                needed: 0..1,
                prefetch: 1..4
            }
        );
        let tiny = Planner::with_ramp(10, MIB, 8 * MIB, 4);
        assert_eq!(tiny.chunk_range(0), 0..10);
        assert_eq!(tiny.chunk_of(9), 0);
    }

    #[test]
    fn the_end_of_the_file_bounds_every_plan() {
        let mut p = Planner::new(10 * MIB + 5, 4 * MIB, 8);
        assert_eq!(
            p.plan(0, 1),
            Plan::Chunks {
                needed: 0..1,
                prefetch: 1..3
            }
        );
        assert_eq!(p.chunk_range(2), 8 * MIB..10 * MIB + 5);
        assert_eq!(p.plan(10 * MIB + 5, 10), Plan::Nothing);
        assert_eq!(p.plan(3, 0), Plan::Nothing);
        let mut q = Planner::new(10, 4, 2);
        assert_eq!(
            q.plan(0, 100),
            Plan::Chunks {
                needed: 0..3,
                prefetch: 3..3
            }
        );
    }
}
