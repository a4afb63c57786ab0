//! The receive ring of an AF_PACKET port (`PACKET_RX_RING`, TPACKET_V2): the kernel copies
//! each frame, vnet header before it, into the next free slot of a ring mapped into the
//! daemon, so a frame is taken with a few loads and a `memcpy`, not a `recv` syscall, and an
//! empty port is seen with one load, not a failed syscall (busy-polling's common case).
//!
//! Why V2 and small slots (benches/README.md, "The floor", has the figures): TPACKET_V3 packs
//! frames into blocks but hands a block over only when it is full or its timer (1 ms at
//! least) fires, so a round trip took a millisecond. V2 hands each frame over at once (and
//! wakes the reader per frame, as a plain socket does). Its slots are fixed-size: slots big
//! enough for a 64 KB GSO super-frame would make a ring of any depth cost tens of MB per port,
//! so the slots hold an MTU-sized frame ([`SLOT`]) and `PACKET_COPY_THRESH` has the kernel
//! queue a frame too big for one on the socket as before, marking its (cut) slot
//! `TP_STATUS_COPY`: [`Slot::Queued`] says to `recv` it. A bulk TCP stream's super-frames
//! thus cost what they did (one `recv` each) and small frames no syscall.
//!
//! The slots are taken in order by compare-and-swap on a counter and handed back by storing
//! `TP_STATUS_KERNEL` into their status word, so even two readers could not take one slot
//! twice (a port has one: its task). The kernel fills slot after slot and drops a frame when
//! the next slot is still ours (counted in `PACKET_STATISTICS` as a full buffer was).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::{set_int_opt, HDR};
use crate::sys::{cvt, invalid, socklen};

/// A slot: a frame of up to 1972 bytes (a 1500-byte MTU's frame with VLAN tags and room to
/// spare) after the slot header, the kernel's `sockaddr_ll`, alignment and the vnet header (76
/// bytes in all). Anything bigger is queued on the socket ([`Slot::Queued`]).
pub(super) const SLOT: usize = 2048;
/// Blocks of 64 KiB (the kernel allocates each contiguously), 32 slots each.
const BLOCK: usize = 64 << 10;
const _: () = assert!((BLOCK / SLOT).is_power_of_two() && BLOCK % SLOT == 0);
/// The most blocks a ring may have (64 MiB).
const MAX_BLOCKS: usize = 1024;

/// The number of blocks of a ring of about `bytes`: a power of two (so the slot count is one),
/// at least one block and at most [`MAX_BLOCKS`].
pub(super) fn blocks_for(bytes: usize) -> usize {
    let blocks = (bytes / BLOCK).clamp(1, MAX_BLOCKS);
    // The largest power of two not above it.
    1 << blocks.ilog2()
}

/// From linux/if_packet.h.
const PACKET_COPY_THRESH: libc::c_int = 7;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_COPY: u32 = 1 << 1;
const TP_STATUS_KERNEL: u32 = 0;
/// `struct tpacket2_hdr`'s size: a frame (and its vnet header) starts after it.
const SLOT_HDR: usize = 32;
const _: () = assert!(std::mem::size_of::<libc::tpacket2_hdr>() == SLOT_HDR);

/// What a slot the kernel handed over holds (decided by [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// The whole frame at `start..start + len` of the slot; its vnet header (when the socket
    /// has one) is the [`HDR`] bytes before `start`.
    Frame { start: usize, len: usize },
    /// The frame was too big for a slot: the whole of it waits in the socket's queue.
    Queued,
    /// The frame was cut to the slot and not queued (the socket's buffer was full), or the
    /// slot header makes no sense: the frame is lost.
    Lost,
}

/// The fields of a slot's `struct tpacket2_hdr` that say where its frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotHdr {
    pub status: u32,
    /// The frame's length on the wire.
    pub len: u32,
    /// How much of it the slot holds.
    pub snaplen: u32,
    /// The frame's offset in the slot.
    pub mac: u16,
}

impl SlotHdr {
    /// Reads the header at the start of `slot` (`tp_status`, `tp_len`, `tp_snaplen`,
    /// `tp_mac` at offsets 0, 4, 8 and 12).
    fn parse(slot: &[u8]) -> Option<SlotHdr> {
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(slot.get(o..o + 4)?.try_into().ok()?))
        };
        Some(SlotHdr {
            status: u32_at(0)?,
            len: u32_at(4)?,
            snaplen: u32_at(8)?,
            mac: u16::from_ne_bytes(slot.get(12..14)?.try_into().ok()?),
        })
    }
}

/// Where a slot's frame is, from its header, for a socket with a vnet header (`vnet_hdr`,
/// which the kernel writes just before the frame) or without, in a slot of `slot` bytes.
/// Pure: the ring's whole trust in the kernel's header is here, checked.
pub(super) fn classify(h: SlotHdr, vnet_hdr: bool, slot: usize) -> Slot {
    let (len, snap, mac) = (h.len as usize, h.snaplen as usize, usize::from(h.mac));
    let room = if vnet_hdr { SLOT_HDR + HDR } else { SLOT_HDR };
    if snap < len {
        return if h.status & TP_STATUS_COPY != 0 {
            Slot::Queued
        } else {
            Slot::Lost
        };
    }
    if snap != len || mac < room || mac.saturating_add(len) > slot {
        return Slot::Lost;
    }
    Slot::Frame { start: mac, len }
}

/// A socket's receive ring, mapped (see the module docs).
#[derive(Debug)]
pub(super) struct RxRing {
    base: NonNull<u8>,
    /// Its slots (a power of two) and the mapping's length.
    slots: usize,
    len: usize,
    /// The next slot to take, counted from 0 (the slot is `next % slots`; the counter wraps
    /// at a multiple of `slots`, so the order survives the wrap).
    next: AtomicUsize,
}

// SAFETY: the mapping is shared memory owned by the ring for its whole life; every access to
// it goes through the slot protocol (an atomic status word, CAS-taken slots), never through
// a `&mut`, so it may be used from any thread.
unsafe impl Send for RxRing {}
// SAFETY: as above: concurrent `take`s each get a different slot (see `take`).
unsafe impl Sync for RxRing {}

impl RxRing {
    /// Makes the socket's ring (TPACKET_V2, [`blocks_for`]`(bytes)` blocks of slots of
    /// [`SLOT`] bytes, frames too big for one queued on the socket) and maps it. Call before
    /// `bind`, after `PACKET_VNET_HDR`.
    pub(super) fn new(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<RxRing> {
        let blocks = blocks_for(bytes);
        let (slots, len) = (BLOCK / SLOT * blocks, BLOCK * blocks);
        set_int_opt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, TPACKET_V2)?;
        set_int_opt(fd, libc::SOL_PACKET, PACKET_COPY_THRESH, 1)?;
        let c = |v: usize| libc::c_uint::try_from(v).map_err(invalid);
        let req = libc::tpacket_req {
            tp_block_size: c(BLOCK)?,
            tp_block_nr: c(blocks)?,
            tp_frame_size: c(SLOT)?,
            tp_frame_nr: c(slots)?,
        };
        // SAFETY: `fd` is a valid open socket; `req` is a live, initialised `tpacket_req`
        // and the length is its size; the return value is checked.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                std::ptr::from_ref(&req).cast(),
                socklen::<libc::tpacket_req>()?,
            )
        })?;
        // SAFETY: a new shared mapping of the socket's ring, of the size just asked for, at
        // an address the kernel picks; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(RxRing {
            base,
            slots,
            len,
            next: AtomicUsize::new(0),
        })
    }

    /// The slot `i` (modulo the ring's slots): its address in the mapping.
    fn slot_ptr(&self, i: usize) -> *mut u8 {
        // Slots never straddle blocks (BLOCK is a multiple of SLOT) and blocks are laid out
        // one after the other in the mapping, so slot i is at i * SLOT.
        // SAFETY: i % slots < slots, so the offset is within the mapping of slots * SLOT.
        unsafe { self.base.as_ptr().add((i % self.slots) * SLOT) }
    }

    /// The status word of slot `i`, which the kernel and the reader hand the slot over with.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the slot starts with its u32 `tp_status`, 4-byte aligned (slots are
        // SLOT-aligned in a page-aligned mapping) and alive as long as `self`; the kernel
        // writes it with a release store and the reader only atomically.
        unsafe { &*self.slot_ptr(i).cast::<AtomicU32>() }
    }

    /// Takes the next frame the kernel handed over, if any: gives `f` what the slot holds
    /// and the slot's bytes, then hands the slot back. None if the next slot is the kernel's.
    pub(super) fn take<R>(&self, vnet_hdr: bool, f: impl FnOnce(Slot, &[u8]) -> R) -> Option<R> {
        let mut i = self.next.load(Ordering::Relaxed);
        loop {
            if self.status(i).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return None;
            }
            match self.next.compare_exchange_weak(
                i,
                i.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => i = now,
            }
        }
        // SAFETY: slot i is within the mapping and ours until its status is stored below:
        // the kernel writes a slot only while its status is TP_STATUS_KERNEL, and the CAS
        // gave it to this call alone.
        let bytes = unsafe { std::slice::from_raw_parts(self.slot_ptr(i), SLOT) };
        let slot = SlotHdr::parse(bytes).map_or(Slot::Lost, |h| classify(h, vnet_hdr, SLOT));
        let r = f(slot, bytes);
        self.status(i).store(TP_STATUS_KERNEL, Ordering::Release);
        Some(r)
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that size, unmapped once; no slice of it
        // outlives a `take` call.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(status: u32, len: u32, snaplen: u32, mac: u16) -> SlotHdr {
        SlotHdr {
            status,
            len,
            snaplen,
            mac,
        }
    }

    #[test]
    fn a_whole_frame_is_where_the_header_says() {
        let h = hdr(TP_STATUS_USER, 60, 60, 76);
        assert_eq!(classify(h, true, SLOT), Slot::Frame { start: 76, len: 60 });
        assert_eq!(
            classify(hdr(1, 1958, 1958, 90), true, SLOT),
            Slot::Frame {
                start: 90,
                len: 1958
            }
        );
    }

    #[test]
    fn a_cut_frame_is_queued_or_lost() {
        assert_eq!(
            classify(
                hdr(TP_STATUS_USER | TP_STATUS_COPY, 65000, 1958, 90),
                true,
                SLOT
            ),
            Slot::Queued
        );
        assert_eq!(
            classify(hdr(TP_STATUS_USER, 65000, 1958, 90), true, SLOT),
            Slot::Lost
        );
    }

    #[test]
    fn a_header_that_points_outside_the_slot_loses_the_frame() {
        // No room for the vnet header between the slot header and the frame.
        assert_eq!(classify(hdr(1, 60, 60, 40), true, SLOT), Slot::Lost);
        assert_eq!(
            classify(hdr(1, 60, 60, 40), false, SLOT),
            Slot::Frame { start: 40, len: 60 }
        );
        assert_eq!(classify(hdr(1, 60, 60, 4), false, SLOT), Slot::Lost);
        // Past the slot's end, or a snap length longer than the frame.
        assert_eq!(classify(hdr(1, 2000, 2000, 90), true, SLOT), Slot::Lost);
        assert_eq!(classify(hdr(1, 60, 61, 90), true, SLOT), Slot::Lost);
        assert_eq!(classify(hdr(1, 60, 60, u16::MAX), true, SLOT), Slot::Lost);
    }

    #[test]
    fn ring_sizes_round_down_to_a_power_of_two_of_blocks() {
        assert_eq!(blocks_for(4 << 20), 64);
        assert_eq!(blocks_for(1 << 20), 16);
        assert_eq!(blocks_for(3 << 20), 32);
        assert_eq!(blocks_for(1), 1);
        assert_eq!(blocks_for(usize::MAX), MAX_BLOCKS);
    }

    #[test]
    fn slot_header_fields_are_read_at_their_offsets() {
        let mut slot = [0u8; 32];
        slot[0..4].copy_from_slice(&5u32.to_ne_bytes());
        slot[4..8].copy_from_slice(&100u32.to_ne_bytes());
        slot[8..12].copy_from_slice(&90u32.to_ne_bytes());
        slot[12..14].copy_from_slice(&76u16.to_ne_bytes());
        assert_eq!(SlotHdr::parse(&slot), Some(hdr(5, 100, 90, 76)));
        assert_eq!(SlotHdr::parse(&slot[..13]), None);
    }
}
