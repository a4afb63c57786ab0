//! A fixed-capacity byte ring: the relay's per-direction buffer.
//!
//! Allocated once per connection (zeroed memory comes from `calloc`, so untouched pages cost
//! nothing); after that, moving bytes in and out never allocates.

/// A FIFO of bytes with a fixed capacity.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![0u8; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// The contiguous free space after the last byte (may be shorter than [`Ring::free`] when
    /// the free space wraps); fill it, then [`Ring::commit`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        let tail = (self.head + self.len) % cap;
        let end = if tail >= self.head && self.len < cap {
            cap
        } else {
            self.head
        };
        if self.len == cap {
            return &mut [];
        }
        &mut self.buf[tail..end]
    }

    /// Marks `n` bytes of [`Ring::spare_mut`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.capacity());
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
        self.head = (self.head + n) % self.capacity();
        self.len -= n;
        if self.len == 0 {
            // Keeps the next fill contiguous.
            self.head = 0;
        }
    }

    /// The `len` bytes from `offset` (clamped to what is held), as up to two slices.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let offset = offset.min(self.len);
        let len = len.min(self.len - offset);
        let cap = self.capacity();
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
