//! Helpers for the `sys` tests: throwaway network namespaces and frame builders.
//!
//! Tests that need root run their body on a dedicated thread that unshares its network
//! namespace. Every device they create lives in that namespace, which the kernel tears down
//! (with the devices) when the thread and its fds are gone, even if the body panicked.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};

use crate::port::Port;

/// Runs `f` on a new thread in a fresh, empty network namespace and returns its result;
/// a panic in `f` is re-raised on the caller's thread.
pub(crate) fn in_new_netns<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let handle = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) (tests need root)");
        // No IPv6 autoconf chatter (DAD, MLD, RS) on the test links. Best effort: the file is
        // absent without IPv6; children of this thread inherit the namespace.
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip ARGS` in the calling thread's network namespace (children inherit it).
pub(crate) fn ip(args: &[&str]) {
    ip_output(args);
}

/// Runs `ip ARGS` like [`ip`] and returns its standard output.
pub(crate) fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the running kernel is at least `major.minor`.
pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

/// Polls `cond` until it holds or `timeout` passes; returns its last answer.
///
/// For "gone once its fd is closed" checks: a test thread of the same process that forks (to
/// run `ip`) at that moment gives the child a copy of every fd, close-on-exec or not, until
/// it execs, so the device may outlive the close by a moment.
pub(crate) fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits up to `timeout` for `fd` to become readable.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    // SAFETY: test callers pass the fd of a port they hold for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// Receives from `port` until a frame (header included) satisfies `pred` or `timeout` passes;
/// other frames are skipped.
pub(crate) fn recv_matching(
    port: &dyn Port,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536 + 10];
    loop {
        match port.recv(&mut buf) {
            Ok(n) if pred(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv on {}: {e}", port.kind()),
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        wait_readable(port.raw_fd(), left);
    }
}

/// An Ethernet frame.
pub(crate) fn eth_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A broadcast ARP request from `src` (who-has 192.0.2.2 tell 192.0.2.1, documentation
/// addresses; the frame never leaves the test namespace).
pub(crate) fn broadcast_arp(src: [u8; 6]) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    arp.extend_from_slice(&src);
    arp.extend_from_slice(&[192, 0, 2, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[192, 0, 2, 2]);
    eth_frame([0xff; 6], src, 0x0806, &arp)
}

/// virtio_net_hdr `gso_type` values.
pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_UDP_L4: u8 = 5;

/// An IPv4 GSO super-frame from `src` to `dst` (192.0.2.1 -> 192.0.2.2, never leaves the test
/// namespace) carrying `payload_len` bytes of 0x42 in segments of `mss`, with its virtio-net
/// header (NEEDS_CSUM; checksums left for the kernel). `gso_type` is [`GSO_TCPV4`] or
/// [`GSO_UDP_L4`]. Returns `[hdr][frame]` and the L4 header length.
pub(crate) fn ipv4_gso(
    dst: [u8; 6],
    src: [u8; 6],
    gso_type: u8,
    payload_len: usize,
    mss: u16,
) -> (Vec<u8>, usize) {
    let (proto, l4) = match gso_type {
        GSO_TCPV4 => {
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
            tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
            tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
            tcp[12] = 5 << 4; // data offset
            tcp[13] = 0x18; // PSH|ACK
            tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
            (6u8, tcp)
        }
        GSO_UDP_L4 => {
            let mut udp = vec![0u8; 8];
            udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
            udp[2..4].copy_from_slice(&5201u16.to_be_bytes());
            let len = u16::try_from(8 + payload_len).expect("UDP length");
            udp[4..6].copy_from_slice(&len.to_be_bytes());
            (17u8, udp)
        }
        other => panic!("unsupported gso_type {other}"),
    };
    let mut ip4 = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    let total = u16::try_from(20 + l4.len() + payload_len).expect("IPv4 length");
    ip4[2..4].copy_from_slice(&total.to_be_bytes());
    let l4_len = l4.len();
    let mut l3 = ip4;
    l3.extend_from_slice(&l4);
    l3.resize(l3.len() + payload_len, 0x42);
    let frame = eth_frame(dst, src, 0x0800, &l3);

    // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (native endian).
    let hdr_len = u16::try_from(14 + 20 + l4_len).expect("hdr_len");
    let csum_offset = if gso_type == GSO_TCPV4 { 16u16 } else { 6 };
    let mut out = vec![1u8, gso_type];
    for v in [hdr_len, mss, 34, csum_offset] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&frame);
    (out, l4_len)
}

/// Reads a native-endian `u16` field of a virtio-net header.
pub(crate) fn hdr_u16(frame: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([frame[at], frame[at + 1]])
}
