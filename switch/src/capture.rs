//! Packet capture to pcap: a port can carry a capture tap that copies the frames it sees to a
//! bounded channel; the daemon streams them out as pcap.
//!
//! Capturing costs one relaxed atomic load per frame when off. When on, each captured frame is
//! copied (this is a debugging tool; the copy happens only while someone is watching), and a
//! frame that finds the channel full is counted in `dropped` rather than slowing the switch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

/// Largest frame length recorded (a 64 KiB GSO super-frame fits whole).
pub const SNAPLEN: u32 = 262_144;

/// One captured Ethernet frame (no virtio-net header).
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    pub ts: SystemTime,
    pub data: Vec<u8>,
}

/// A capture tap: where a port sends copies of its frames.
#[derive(Debug)]
pub struct Capture {
    tx: mpsc::Sender<CapturedFrame>,
    /// Also copy frames the port transmits (endpoint captures); a network-wide capture takes
    /// only received frames, so each frame is recorded once.
    pub include_tx: bool,
    pub dropped: AtomicU64,
}

impl Capture {
    /// A tap and the receiving end of its channel (`depth` frames).
    pub fn new(include_tx: bool, depth: usize) -> (Arc<Capture>, mpsc::Receiver<CapturedFrame>) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        (
            Arc::new(Capture {
                tx,
                include_tx,
                dropped: AtomicU64::new(0),
            }),
            rx,
        )
    }

    fn offer(&self, eth: &[u8]) {
        let f = CapturedFrame {
            ts: SystemTime::now(),
            data: eth.to_vec(),
        };
        if self.tx.try_send(f).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The capture slot of one port.
#[derive(Debug, Default)]
pub struct CaptureSlot {
    on: AtomicBool,
    tap: ArcSwapOption<Capture>,
}

impl CaptureSlot {
    /// Installs a tap; false if one is already installed.
    pub fn start(&self, c: Arc<Capture>) -> bool {
        let prev = self
            .tap
            .compare_and_swap(&None::<Arc<Capture>>, Some(c.clone()));
        if prev.is_some() {
            return false;
        }
        self.on.store(true, Relaxed);
        true
    }

    /// Removes `c` if it is the installed tap.
    pub fn stop(&self, c: &Arc<Capture>) {
        let cur = self.tap.load_full();
        if cur.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)) {
            self.on.store(false, Relaxed);
            self.tap.store(None);
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Records a received frame (Ethernet bytes) if a capture is on.
    #[inline]
    pub fn rx(&self, eth: &[u8]) {
        if self.on.load(Relaxed) {
            if let Some(c) = self.tap.load().as_ref() {
                c.offer(eth);
            }
        }
    }

    /// Records a transmitted frame if an endpoint capture is on.
    #[inline]
    pub fn tx(&self, eth: &[u8]) {
        if self.on.load(Relaxed) {
            if let Some(c) = self.tap.load().as_ref() {
                if c.include_tx {
                    c.offer(eth);
                }
            }
        }
    }
}

/// The pcap file header: microsecond timestamps, Ethernet link type.
pub fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    h
}

/// Appends one pcap record for `f` to `out`.
pub fn pcap_record(f: &CapturedFrame, out: &mut Vec<u8>) {
    let since =
        f.ts.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
    let secs = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    let orig = u32::try_from(f.data.len()).unwrap_or(u32::MAX);
    let incl = orig.min(SNAPLEN);
    out.extend_from_slice(&secs.to_le_bytes());
    out.extend_from_slice(&since.subsec_micros().to_le_bytes());
    out.extend_from_slice(&incl.to_le_bytes());
    out.extend_from_slice(&orig.to_le_bytes());
    out.extend_from_slice(&f.data[..incl as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_takes_one_capture_and_records_by_direction() {
        let slot = CaptureSlot::default();
        slot.rx(&[1, 2, 3]); // off: nothing happens
        let (c, mut rx) = Capture::new(false, 4);
        assert!(slot.start(c.clone()));
        let (c2, _rx2) = Capture::new(true, 4);
        assert!(!slot.start(c2), "one capture per port");
        slot.rx(&[1, 2, 3]);
        slot.tx(&[4, 5, 6]);
        assert_eq!(rx.try_recv().map(|f| f.data).ok(), Some(vec![1, 2, 3]));
        assert!(rx.try_recv().is_err(), "network capture skips tx");
        slot.stop(&c);
        assert!(!slot.is_on());
    }

    #[test]
    fn full_channel_counts_drops() {
        let slot = CaptureSlot::default();
        let (c, _rx) = Capture::new(true, 1);
        slot.start(c.clone());
        slot.rx(&[0; 20]);
        slot.rx(&[0; 20]);
        assert_eq!(c.dropped.load(Relaxed), 1);
    }

    #[test]
    fn pcap_layout() {
        let h = pcap_header();
        assert_eq!(&h[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let mut out = Vec::new();
        let f = CapturedFrame {
            ts: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(5_000_007),
            data: vec![9; 60],
        };
        pcap_record(&f, &mut out);
        assert_eq!(&out[0..4], &5u32.to_le_bytes());
        assert_eq!(&out[4..8], &7u32.to_le_bytes());
        assert_eq!(&out[8..12], &60u32.to_le_bytes());
        assert_eq!(out.len(), 16 + 60);
    }
}
