//! A port's receive buffer taken straight from the kernel (an anonymous private mapping)
//! instead of the allocator.
//!
//! Each port's driver owns one receive buffer of [`RX_BUF_LEN`](crate::driver::RX_BUF_LEN)
//! bytes (a whole GSO super-frame). Zeroed memory from the allocator costs resident memory
//! as soon as the allocator has to clear pages it used before: with 500 endpoints attached,
//! a second round of attaches held 31 MiB more than the first (every buffer cleared by
//! mimalloc, 64 KiB each), although a port that only ever sees small frames touches its
//! first page or two. A fresh mapping is zero by the kernel's promise and costs a page only
//! when a frame is written into it; unmapping it gives everything back at once.

use std::io;
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// `len` zero bytes in their own mapping, unmapped on drop.
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PageBuf owns its mapping exclusively (as a Box<[u8]> owns its allocation); `&PageBuf`
// only gives shared reads.
unsafe impl Send for PageBuf {}
// SAFETY: as above.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// Maps `len` bytes (rounded up to pages by the kernel); `len` 0 is refused.
    pub fn new(len: usize) -> io::Result<PageBuf> {
        let size = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty page buffer"))?;
        // SAFETY: a new private anonymous mapping at an address of the kernel's choice aliases
        // nothing; the pointer stays valid for `len` bytes until munmap in Drop.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        Ok(PageBuf {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuf({} bytes)", self.len)
    }
}

impl Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds `len` initialised bytes (the kernel zero-fills it) and
        // lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping made in new, unmapped once, here; no
        // reference to it outlives self.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::warn!(error = %e, "unmapping a port buffer failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_refuses_empty() {
        let mut b = PageBuf::new(65_802).unwrap();
        assert_eq!(b.len(), 65_802);
        assert!(b.iter().all(|&x| x == 0));
        b[65_801] = 7;
        b[0] = 1;
        assert_eq!((b[0], b[65_801]), (1, 7));
        assert!(PageBuf::new(0).is_err());
    }
}
