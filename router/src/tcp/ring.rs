//! A byte ring with a size limit: the relay's per-direction buffer.
//!
//! The limit (what the relay may hold, and so the window it offers) is fixed, but the memory
//! behind it grows on demand, doubling from [`MIN_ALLOC`] whenever the ring fills. A short
//! connection (a request and an answer) thus costs a few KiB from the heap instead of two
//! 1 MiB mappings, whose `mmap`, page faults and `munmap` (a TLB shootdown across the
//! runtime's threads) were most of a published connection's cost. A bulk transfer reaches the
//! limit after a handful of doublings; after that, moving bytes in and out never allocates.
//! Memory is given back when the connection ends.

/// The first allocation of a ring that receives data.
pub const MIN_ALLOC: usize = 4096;

/// A FIFO of bytes holding at most `limit` bytes.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    limit: usize,
    head: usize,
    len: usize,
}

impl Ring {
    /// An empty ring that will hold up to `limit` bytes (nothing is allocated yet).
    pub fn new(limit: usize) -> Ring {
        Ring {
            buf: Box::default(),
            limit: limit.max(1),
            head: 0,
            len: 0,
        }
    }

    /// The memory allocated now.
    pub fn allocated(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left under the limit (allocated or not).
    pub fn free(&self) -> usize {
        self.limit - self.len
    }

    /// Reallocates to twice the size (at least [`MIN_ALLOC`], at most the limit), with the
    /// held bytes moved to the front.
    fn grow(&mut self) {
        let cap = (self.buf.len() * 2).clamp(MIN_ALLOC.min(self.limit), self.limit);
        let mut buf = vec![0u8; cap].into_boxed_slice();
        let (a, b) = self.slices(0, self.len);
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.buf = buf;
        self.head = 0;
    }

    /// The contiguous free space after the last byte (may be shorter than [`Ring::free`] when
    /// the free space wraps or is not allocated yet); fill it, then [`Ring::commit`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        if self.len == self.buf.len() {
            if self.len == self.limit {
                return &mut [];
            }
            self.grow();
        }
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap;
        let end = if tail >= self.head { cap } else { self.head };
        &mut self.buf[tail..end]
    }

    /// Marks `n` bytes of [`Ring::spare_mut`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let spare = self.spare_mut();
            if spare.is_empty() {
                break;
            }
            let n = spare.len().min(data.len() - done);
            spare[..n].copy_from_slice(&data[done..done + n]);
            self.commit(n);
            done += n;
        }
        done
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            // Keeps the next fill contiguous.
            0
        } else {
            (self.head + n) % self.buf.len()
        };
    }

    /// The `len` bytes from `offset` (clamped to what is held), as up to two slices.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let offset = offset.min(self.len);
        let len = len.min(self.len - offset);
        let cap = self.buf.len();
        if cap == 0 {
            return (&[], &[]);
        }
        let start = (self.head + offset) % cap;
        let first = len.min(cap - start);
        (&self.buf[start..start + first], &self.buf[..len - first])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &Ring, off: usize, len: usize) -> Vec<u8> {
        let (a, b) = r.slices(off, len);
        [a, b].concat()
    }

    #[test]
    fn fills_wraps_and_drains_in_order() {
        let mut r = Ring::new(8);
        assert_eq!(r.push(b"abcdef"), 6);
        r.consume(4);
        assert_eq!(r.push(b"ghijklmn"), 6, "only the free space is taken");
        assert_eq!(r.len(), 8);
        assert_eq!(collect(&r, 0, 8), b"efghijkl");
        assert_eq!(collect(&r, 3, 100), b"hijkl");
        assert!(r.spare_mut().is_empty());
        r.consume(8);
        assert!(r.is_empty());
        assert_eq!(r.spare_mut().len(), 8);
    }

    #[test]
    fn memory_grows_on_demand_up_to_the_limit_keeping_the_order() {
        let mut r = Ring::new(3 * MIN_ALLOC);
        assert_eq!(r.allocated(), 0, "nothing until data comes");
        assert_eq!(
            r.free(),
            3 * MIN_ALLOC,
            "the window is the limit from the start"
        );
        let data: Vec<u8> = (0..4 * MIN_ALLOC).map(|i| (i % 251) as u8).collect();
        assert_eq!(r.push(&data[..10]), 10);
        assert_eq!(r.allocated(), MIN_ALLOC);
        // Wrap inside the first allocation, then grow: the order survives the move.
        r.consume(6);
        assert_eq!(r.push(&data[10..MIN_ALLOC + 100]), MIN_ALLOC + 90);
        assert_eq!(r.allocated(), 2 * MIN_ALLOC);
        assert_eq!(collect(&r, 0, r.len()), &data[6..MIN_ALLOC + 100]);
        // Capped at the limit, not the next power of two.
        assert_eq!(
            r.push(&data[MIN_ALLOC + 100..]),
            3 * MIN_ALLOC - (MIN_ALLOC + 94)
        );
        assert_eq!(r.allocated(), 3 * MIN_ALLOC);
        assert_eq!(r.free(), 0);
        assert!(r.spare_mut().is_empty());
        r.consume(r.len());
        assert!(r.is_empty());
    }

    #[test]
    fn spare_then_commit() {
        let mut r = Ring::new(4);
        let s = r.spare_mut();
        s[..3].copy_from_slice(b"xyz");
        r.commit(3);
        r.consume(2);
        assert_eq!(r.spare_mut().len(), 1, "contiguous part up to the end");
        r.push(b"12");
        assert_eq!(collect(&r, 0, 4), b"z12");
    }
}
