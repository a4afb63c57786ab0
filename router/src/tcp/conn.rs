//! One relayed TCP connection, as a state machine with no I/O of its own.
//!
//! netyard is the TCP peer the endpoint talks to; the other half of the relay is an ordinary
//! host socket. Each direction has one bounded [`Ring`]:
//! - endpoint to host: in-order payload is written straight to the host socket; what the socket
//!   cannot take yet waits in `to_host`, and the window we advertise is `to_host`'s free space,
//!   so a slow destination slows the endpoint down by TCP's own flow control;
//! - host to endpoint: what the host socket gives is kept in `to_cont` until the endpoint
//!   acknowledges it, and sent as segments of up to 64 KiB (GSO) within the endpoint's window.
//!
//! The link to the endpoint is a virtual one that loses frames only when a queue overflows,
//! so the loss recovery is deliberately simple: out-of-order segments are kept (up to 1 MiB)
//! and answered with a duplicate ACK (no SACK is offered), so only the hole is resent; three duplicate ACKs retransmit one MSS
//! (NewReno-style partial ACKs retransmit the next), a retransmission timer goes back to the
//! first unacknowledged byte, and a zero window is probed with one byte. There is no
//! congestion window: the endpoint's receive window and our buffer bound what is in flight.
//!
//! The driver ([`super::relay`]) feeds it segments, host readiness and ticks; it writes to the
//! host through [`HostIo`] and sends segments through [`SegOut`], both of which unit tests mock.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use super::ring::Ring;
use super::seg::{max_payload, seq_le, seq_lt, Seg, SegHdr, SynOpts, ACK, FIN, PSH, RST, SYN};
use crate::conntrack::FlowState;

/// Our window scale (advertised when the endpoint offers scaling).
pub const OUR_WSCALE: u8 = 7;
/// First retransmission timeout, and its floor.
pub const RTO_MIN: Duration = Duration::from_millis(200);
const RTO_MAX: Duration = Duration::from_secs(10);
/// Retransmissions of one segment (SYN included) before the connection is given up.
const MAX_RETRIES: u32 = 8;
/// Out-of-order bytes kept per connection.
const OOO_MAX: usize = 1 << 20;
/// MSS assumed when the endpoint sends none (RFC 9293).
const DEFAULT_MSS: u16 = 536;

/// The host side of the relay, as the state machine sees it.
pub trait HostIo {
    /// Writes what the host socket takes now (`WouldBlock` when it takes nothing).
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Sends FIN to the destination (shutdown of the write side).
    fn shutdown_write(&mut self);
}

/// The endpoint side: segments to it.
pub trait SegOut {
    /// Sends one segment (the payload in up to two parts, cut by the switch at `mss` if it is
    /// longer); false when there is no room now (nothing was sent).
    fn send(&mut self, h: &SegHdr, payload: (&[u8], &[u8]), mss: u16) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Egress: the endpoint's SYN arrived, the host socket is connecting.
    Connecting,
    /// Published port: our SYN to the endpoint is out.
    SynSent,
    /// Our SYN-ACK to the endpoint is out.
    SynRcvd,
    /// Data flows (including half-closed states, told apart by the FIN flags).
    Established,
}

/// What the driver does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep going.
    Continue,
    /// Both directions finished: close the host socket normally.
    Done,
    /// Close the host socket with a reset (the endpoint reset or vanished; if the endpoint
    /// must learn of it, the state machine already sent it RST).
    Abort,
}

/// What reading the host socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Nothing more for now (or the buffer is full: read again when it drains).
    Paused,
    /// The destination closed its side.
    Eof,
}

#[derive(Debug)]
pub struct Conn {
    pub state: State,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// The endpoint's window, in bytes.
    snd_wnd: u32,
    peer_ws: u8,
    /// Our shift (0 unless the endpoint offered scaling).
    our_ws: u8,
    /// Segment size towards the endpoint.
    mss: u16,
    rcv_nxt: u32,
    pub to_host: Ring,
    pub to_cont: Ring,
    /// The endpoint sent FIN (in order).
    fin_in: bool,
    /// ... and the host socket has been shut down for writing.
    host_shut: bool,
    /// The destination closed its side.
    host_eof: bool,
    /// Our FIN has been sent (it sits at `snd_una + to_cont.len()`).
    fin_out: bool,
    fin_acked: bool,
    rto: Duration,
    deadline: Option<Instant>,
    retries: u32,
    /// Our SYN was answered by a stale connection's ACK, reset, and sent again at once.
    syn_resent: bool,
    dup_acks: u8,
    recover: Option<u32>,
    /// An ACK is owed to the endpoint (sent at the end of the burst).
    pub ack_owed: bool,
    /// Sending stopped on a full switch queue.
    pub blocked: bool,
    /// Our MSS as advertised (the network MTU minus 40).
    our_mss: u16,
    /// Payload bytes taken from the endpoint, and acknowledged by it.
    rx_bytes: u64,
    tx_bytes: u64,
    /// Stream offset of `rcv_nxt` (bytes taken in order), the key space of `ooo`.
    rcv_off: u64,
    /// Out-of-order segments by stream offset, with their FIN flag.
    ooo: BTreeMap<u64, (Vec<u8>, bool)>,
    ooo_bytes: usize,
}

impl Conn {
    fn new(state: State, iss: u32, our_mss: u16, buf: usize) -> Conn {
        Conn {
            state,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_wnd: 0,
            peer_ws: 0,
            our_ws: 0,
            mss: DEFAULT_MSS,
            rcv_nxt: 0,
            to_host: Ring::new(buf),
            to_cont: Ring::new(buf),
            fin_in: false,
            host_shut: false,
            host_eof: false,
            fin_out: false,
            fin_acked: false,
            rto: RTO_MIN,
            deadline: None,
            retries: 0,
            syn_resent: false,
            dup_acks: 0,
            recover: None,
            ack_owed: false,
            blocked: false,
            our_mss,
            rx_bytes: 0,
            tx_bytes: 0,
            rcv_off: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
        }
    }

    fn take_syn_opts(&mut self, seg: &Seg<'_>) {
        self.mss = seg
            .opts
            .mss
            .unwrap_or(DEFAULT_MSS)
            .clamp(64, self.our_mss.max(64));
        if let Some(ws) = seg.opts.wscale {
            self.peer_ws = ws;
            self.our_ws = OUR_WSCALE;
        }
    }

    /// Egress: the endpoint's SYN; the driver connects the host socket, then calls
    /// [`Conn::host_connected`].
    pub fn from_syn(seg: &Seg<'_>, iss: u32, our_mss: u16, buf: usize) -> Conn {
        let mut c = Conn::new(State::Connecting, iss, our_mss, buf);
        c.take_syn_opts(seg);
        c.rcv_nxt = seg.seq.wrapping_add(1);
        c.snd_wnd = u32::from(seg.window);
        c
    }

    /// Published port: opens towards the endpoint by sending SYN.
    pub fn open(iss: u32, our_mss: u16, buf: usize, now: Instant, out: &mut impl SegOut) -> Conn {
        let mut c = Conn::new(State::SynSent, iss, our_mss, buf);
        c.send_syn(now, out);
        c
    }

    fn syn_opts(&self) -> SynOpts {
        SynOpts {
            mss: Some(self.our_mss),
            wscale: match self.state {
                State::SynSent => Some(OUR_WSCALE),
                _ if self.our_ws > 0 => Some(self.our_ws),
                _ => None,
            },
        }
    }

    fn send_syn(&mut self, now: Instant, out: &mut impl SegOut) {
        let (flags, ack) = match self.state {
            State::SynSent => (SYN, 0),
            _ => (SYN | ACK, self.rcv_nxt),
        };
        let h = SegHdr {
            seq: self.iss,
            ack,
            flags,
            window: self.window(),
            syn: Some(self.syn_opts()),
        };
        out.send(&h, (&[], &[]), self.mss);
        self.snd_nxt = self.iss.wrapping_add(1);
        self.arm(now);
    }

    /// The host socket connected: answer the endpoint's SYN.
    pub fn host_connected(&mut self, now: Instant, out: &mut impl SegOut) {
        if self.state == State::Connecting {
            self.state = State::SynRcvd;
            self.send_syn(now, out);
        }
    }

    /// The window we advertise: `to_host`'s free space.
    pub fn window(&self) -> u16 {
        let free = if self.fin_in { 0 } else { self.to_host.free() };
        (free >> self.our_ws).min(usize::from(u16::MAX)) as u16
    }

    fn arm(&mut self, now: Instant) {
        if self.deadline.is_none() {
            self.deadline = Some(now + self.rto);
        }
    }

    /// When [`Conn::tick`] next has work.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn hdr(&self, seq: u32, flags: u8) -> SegHdr {
        SegHdr {
            seq,
            ack: self.rcv_nxt,
            flags,
            window: self.window(),
            syn: None,
        }
    }

    /// Sends the owed ACK now.
    pub fn send_ack(&mut self, out: &mut impl SegOut) {
        let h = self.hdr(self.snd_nxt, ACK);
        if out.send(&h, (&[], &[]), self.mss) {
            self.ack_owed = false;
        }
    }

    /// Sends RST to the endpoint (we abort).
    pub fn reset(&mut self, out: &mut impl SegOut) {
        let h = self.hdr(self.snd_nxt, RST | ACK);
        out.send(&h, (&[], &[]), self.mss);
    }

    /// Bytes of data sent and not yet acknowledged.
    fn in_flight(&self) -> usize {
        let n = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
        n.min(self.to_cont.len())
    }

    /// Whether the driver should read the host socket (room in `to_cont`).
    pub fn wants_read(&self) -> bool {
        self.state == State::Established && !self.host_eof && self.to_cont.free() > 0
    }

    /// Fills `to_cont` from the host socket through `read` (a `read(2)` on it).
    pub fn fill(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<ReadEnd> {
        while self.wants_read() {
            match read(self.to_cont.spare_mut()) {
                Ok(0) => {
                    self.host_eof = true;
                    return Ok(ReadEnd::Eof);
                }
                Ok(n) => self.to_cont.commit(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Paused),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ReadEnd::Paused)
    }

    /// Sends what the window allows from `to_cont`, then our FIN once the destination closed
    /// and everything is out.
    pub fn push(&mut self, now: Instant, out: &mut impl SegOut) {
        if self.state != State::Established {
            return;
        }
        self.blocked = false;
        let max = max_payload(self.mss);
        loop {
            let sent = self.in_flight();
            let unsent = self.to_cont.len() - sent;
            if unsent == 0 {
                break;
            }
            let room = (self.snd_wnd as usize).saturating_sub(sent);
            if room == 0 {
                // Zero window: the timer probes it.
                self.arm(now);
                break;
            }
            let n = unsent.min(room).min(max);
            let flags = if n == unsent { ACK | PSH } else { ACK };
            let h = self.hdr(self.snd_nxt, flags);
            if !out.send(&h, self.to_cont.slices(sent, n), self.mss) {
                self.blocked = true;
                return;
            }
            self.ack_owed = false;
            self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
            self.arm(now);
        }
        if self.host_eof && !self.fin_out && self.in_flight() == self.to_cont.len() {
            let h = self.hdr(self.snd_nxt, FIN | ACK);
            if !out.send(&h, (&[], &[]), self.mss) {
                self.blocked = true;
                return;
            }
            self.ack_owed = false;
            self.fin_out = true;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            self.arm(now);
        }
    }

    /// Resends one segment from the first unacknowledged byte.
    fn retransmit_one(&mut self, out: &mut impl SegOut) {
        let n = self.to_cont.len().min(usize::from(self.mss));
        if n > 0 {
            let h = self.hdr(self.snd_una, ACK);
            out.send(&h, self.to_cont.slices(0, n), self.mss);
        } else if self.fin_out && !self.fin_acked {
            let h = self.hdr(self.snd_una, FIN | ACK);
            out.send(&h, (&[], &[]), self.mss);
        }
    }

    /// Writes `to_host` to the host socket.
    pub fn flush(&mut self, host: &mut impl HostIo) -> io::Result<()> {
        let before = self.window();
        while !self.to_host.is_empty() {
            let (a, _) = self.to_host.slices(0, self.to_host.len());
            match host.write(a) {
                Ok(0) => break,
                Ok(n) => self.to_host.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.to_host.is_empty() && self.fin_in && !self.host_shut {
            host.shutdown_write();
            self.host_shut = true;
        }
        // A window that reopened by half or more is announced at once (the endpoint may be
        // waiting on it).
        let after = self.window();
        if u32::from(after) >= 2 * u32::from(before).max(1) {
            self.ack_owed = true;
        }
        Ok(())
    }

    /// Both directions are finished: FINs exchanged and acknowledged, the host shut down.
    pub fn finished(&self) -> bool {
        self.state == State::Established
            && self.fin_in
            && self.host_shut
            && self.fin_out
            && self.fin_acked
    }

    /// [`Conn::finished`], first sending the ACK still owed (the endpoint's FIN's, when it
    /// came in the burst that also acknowledged ours): the connection is forgotten when this
    /// says true, and with it what it owed. Without that ACK the endpoint resends its FIN
    /// after its retransmission timeout and gets RST for it.
    pub fn finish(&mut self, out: &mut impl SegOut) -> bool {
        if !self.finished() {
            return false;
        }
        if self.ack_owed {
            self.send_ack(out);
        }
        true
    }

    /// Handles a segment from the endpoint.
    pub fn segment(
        &mut self,
        seg: &Seg<'_>,
        now: Instant,
        host: &mut impl HostIo,
        out: &mut impl SegOut,
    ) -> Next {
        if seg.has(RST) {
            // Accept a reset in the window (or any in SynSent whose ACK matches).
            let ok = match self.state {
                State::SynSent => seg.has(ACK) && seg.ack == self.iss.wrapping_add(1),
                _ => {
                    seq_le(self.rcv_nxt, seg.seq)
                        && seq_lt(
                            seg.seq,
                            self.rcv_nxt
                                .wrapping_add(u32::from(self.window()).max(1) << self.our_ws),
                        )
                }
            };
            return if ok || seg.seq == self.rcv_nxt {
                Next::Abort
            } else {
                Next::Continue
            };
        }
        match self.state {
            State::Connecting => return Next::Continue, // a retransmitted SYN: still connecting
            State::SynSent => {
                if seg.has(SYN) && seg.has(ACK) && seg.ack == self.iss.wrapping_add(1) {
                    self.take_syn_opts(seg);
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.snd_una = seg.ack;
                    self.snd_wnd = u32::from(seg.window); // never scaled in a SYN
                    self.state = State::Established;
                    self.deadline = None;
                    self.retries = 0;
                    self.send_ack(out);
                } else if seg.has(ACK) {
                    // Not for this connection attempt: a previous connection between the
                    // same addresses that the endpoint still holds (in TIME_WAIT, say). Our
                    // RST clears it, so the SYN goes again now rather than after a timeout
                    // (once: an endpoint that keeps answering so gets the normal retries).
                    let h = SegHdr {
                        seq: seg.ack,
                        ack: 0,
                        flags: RST,
                        window: 0,
                        syn: None,
                    };
                    out.send(&h, (&[], &[]), self.mss);
                    if !self.syn_resent {
                        self.syn_resent = true;
                        self.send_syn(now, out);
                    }
                }
                return Next::Continue;
            }
            State::SynRcvd => {
                if seg.has(SYN) && !seg.has(ACK) {
                    // Our SYN-ACK was lost: send it again.
                    self.send_syn(now, out);
                    return Next::Continue;
                }
                if !seg.has(ACK) || seg.ack != self.iss.wrapping_add(1) {
                    return Next::Continue;
                }
                self.state = State::Established;
                self.snd_una = seg.ack;
                self.deadline = None;
                self.retries = 0;
            }
            State::Established => {
                if seg.has(SYN) {
                    // A retransmitted SYN(-ACK): our answer was lost.
                    self.ack_owed = true;
                    return Next::Continue;
                }
            }
        }
        if seg.has(ACK) {
            self.on_ack(seg, now, out);
        }
        let next = self.on_data(seg, host);
        if next != Next::Continue {
            return next;
        }
        self.push(now, out);
        if self.finish(out) {
            return Next::Done;
        }
        Next::Continue
    }

    fn on_ack(&mut self, seg: &Seg<'_>, now: Instant, out: &mut impl SegOut) {
        let ack = seg.ack;
        let wnd = u32::from(seg.window) << self.peer_ws;
        if seq_lt(self.snd_una, ack) && seq_le(ack, self.snd_nxt) {
            let acked = ack.wrapping_sub(self.snd_una) as usize;
            let data = acked.min(self.to_cont.len());
            self.to_cont.consume(data);
            self.tx_bytes += data as u64;
            if acked > data && self.fin_out {
                self.fin_acked = true;
            }
            self.snd_una = ack;
            self.snd_wnd = wnd;
            self.retries = 0;
            self.rto = RTO_MIN;
            self.dup_acks = 0;
            self.deadline = None;
            if self.snd_nxt != self.snd_una {
                self.arm(now);
            }
            if let Some(r) = self.recover {
                if seq_lt(ack, r) {
                    // Partial ACK: the next hole.
                    self.retransmit_one(out);
                } else {
                    self.recover = None;
                }
            }
        } else if ack == self.snd_una {
            let in_flight = self.snd_nxt != self.snd_una;
            if seg.payload.is_empty() && !seg.has(FIN) && in_flight && wnd == self.snd_wnd {
                self.dup_acks = self.dup_acks.saturating_add(1);
                if self.dup_acks == 3 && self.recover.is_none() {
                    self.recover = Some(self.snd_nxt);
                    self.retransmit_one(out);
                }
            }
            self.snd_wnd = wnd;
        }
        // An ACK beyond what we sent is ignored (RFC 9293 would re-ACK; harmless here).
    }

    fn on_data(&mut self, seg: &Seg<'_>, host: &mut impl HostIo) -> Next {
        let len = seg.payload.len() as u32 + u32::from(seg.has(FIN));
        if len == 0 {
            // A bare ACK at an old sequence number is a zero-window probe or a keepalive:
            // it asks for an ACK (with our current window), which may be all that unsticks
            // the endpoint.
            if seg.seq != self.rcv_nxt {
                self.ack_owed = true;
            }
            return Next::Continue;
        }
        if self.fin_in {
            self.ack_owed = true; // a retransmitted FIN: our ACK was lost
            return Next::Continue;
        }
        if seq_lt(self.rcv_nxt, seg.seq) {
            // A hole before it: keep it, so that the hole's retransmission is all the
            // endpoint has to resend; the duplicate ACK asks for the hole.
            self.stash(seg.seq, seg.payload, seg.has(FIN));
            self.ack_owed = true;
            return Next::Continue;
        }
        let skip = self.rcv_nxt.wrapping_sub(seg.seq) as usize;
        if skip > seg.payload.len() || (skip == seg.payload.len() && !seg.has(FIN)) {
            self.ack_owed = true; // all old
            return Next::Continue;
        }
        self.ack_owed = true;
        match self.take(&seg.payload[skip..], seg.has(FIN), host) {
            Err(()) => return Next::Abort,
            Ok(false) => return Next::Continue,
            Ok(true) => {}
        }
        // The hole may be filled: what was kept follows.
        while let Some((off, (data, fin))) = self.ooo.pop_first() {
            self.ooo_bytes -= data.len();
            if off > self.rcv_off {
                self.ooo.insert(off, (data, fin));
                self.ooo_bytes += self.ooo.get(&off).map_or(0, |d| d.0.len());
                break;
            }
            let skip = (self.rcv_off - off) as usize;
            if skip > data.len() || (skip == data.len() && !fin) {
                continue; // covered already
            }
            match self.take(&data[skip..], fin, host) {
                Err(()) => return Next::Abort,
                Ok(true) => {}
                Ok(false) => break,
            }
        }
        Next::Continue
    }

    /// Keeps an out-of-order segment (bounded: [`OOO_MAX`] bytes in all). Allocates, but only
    /// while recovering from a loss.
    fn stash(&mut self, seq: u32, payload: &[u8], fin: bool) {
        let ahead = u64::from(seq.wrapping_sub(self.rcv_nxt));
        let off = self.rcv_off + ahead;
        if ahead > OOO_MAX as u64 || self.ooo_bytes + payload.len() > OOO_MAX {
            return;
        }
        if self
            .ooo
            .get(&off)
            .is_some_and(|d| d.0.len() >= payload.len())
        {
            return;
        }
        if let Some(old) = self.ooo.insert(off, (payload.to_vec(), fin)) {
            self.ooo_bytes -= old.0.len();
        }
        self.ooo_bytes += payload.len();
    }

    /// Takes in-order data (and FIN): straight to the host socket when nothing waits before
    /// it, else into `to_host`. Ok(true) when all of it was taken; Err when the host socket
    /// failed (the destination is gone).
    fn take(&mut self, data: &[u8], fin: bool, host: &mut impl HostIo) -> Result<bool, ()> {
        let mut taken = 0;
        if self.to_host.is_empty() && !data.is_empty() {
            loop {
                match host.write(&data[taken..]) {
                    Ok(n) => {
                        taken += n;
                        if n == 0 || taken == data.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
        }
        taken += self.to_host.push(&data[taken..]);
        self.rcv_nxt = self.rcv_nxt.wrapping_add(taken as u32);
        self.rcv_off += taken as u64;
        self.rx_bytes += taken as u64;
        if taken < data.len() {
            return Ok(false);
        }
        if fin {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.fin_in = true;
            self.ooo.clear();
            self.ooo_bytes = 0;
            if self.to_host.is_empty() {
                host.shutdown_write();
                self.host_shut = true;
            }
        }
        Ok(true)
    }

    /// Timers: retransmission and zero-window probes. Returns `Abort` when the endpoint has not
    /// answered after [`MAX_RETRIES`] (the endpoint is then sent RST).
    pub fn tick(&mut self, now: Instant, out: &mut impl SegOut) -> Next {
        let Some(d) = self.deadline else {
            return Next::Continue;
        };
        if now < d {
            return Next::Continue;
        }
        self.deadline = None;
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            self.reset(out);
            return Next::Abort;
        }
        self.rto = (self.rto * 2).min(RTO_MAX);
        match self.state {
            State::Connecting => {}
            State::SynSent | State::SynRcvd => self.send_syn(now, out),
            State::Established => {
                if self.snd_nxt != self.snd_una {
                    // Go back to the first unacknowledged byte.
                    self.snd_nxt = self.snd_una;
                    self.fin_out = false;
                    self.recover = None;
                    self.dup_acks = 0;
                    self.push(now, out);
                } else if !self.to_cont.is_empty() && self.snd_wnd == 0 {
                    // Zero-window probe: one byte beyond the window.
                    let h = self.hdr(self.snd_nxt, ACK);
                    if out.send(&h, self.to_cont.slices(0, 1), self.mss) {
                        self.snd_nxt = self.snd_nxt.wrapping_add(1);
                    }
                    self.arm(now);
                } else {
                    self.retries = 0;
                }
            }
        }
        Next::Continue
    }

    /// The state as listed by `netyard flows`.
    pub fn flow_state(&self) -> FlowState {
        match self.state {
            State::Connecting | State::SynSent => FlowState::SynSent,
            State::SynRcvd => FlowState::SynRecv,
            State::Established if self.fin_in || self.fin_out => FlowState::Closing,
            State::Established => FlowState::Established,
        }
    }

    /// The next sequence number expected from the endpoint (its ISN + 1 until data flows).
    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt
    }

    /// Payload bytes from the endpoint (taken) and to it (acknowledged).
    pub fn byte_totals(&self) -> (u64, u64) {
        (self.rx_bytes, self.tx_bytes)
    }

    pub fn host_eof(&self) -> bool {
        self.host_eof
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[derive(Default)]
    struct Host {
        got: Vec<u8>,
        room: usize,
        shut: bool,
    }
    impl HostIo for Host {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = data.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn shutdown_write(&mut self) {
            self.shut = true;
        }
    }

    #[derive(Default)]
    struct Out {
        segs: Vec<(SegHdr, Vec<u8>)>,
        full: bool,
    }
    impl SegOut for Out {
        fn send(&mut self, h: &SegHdr, p: (&[u8], &[u8]), _mss: u16) -> bool {
            if self.full {
                return false;
            }
            self.segs.push((*h, [p.0, p.1].concat()));
            true
        }
    }

    fn seg(seq: u32, ack: u32, flags: u8, window: u16, payload: &[u8]) -> Seg<'_> {
        Seg {
            src_mac: [2, 0, 0, 0, 0, 2],
            src: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000).into(),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80).into(),
            seq,
            ack,
            flags,
            window,
            opts: SynOpts {
                mss: Some(1460),
                wscale: Some(7),
            },
            payload,
            quote: &[],
            ttl: 64,
        }
    }

    /// A connection under test with its mocks: an egress connection driven to Established
    /// (endpoint ISN 1000, ours 5000), or a published one (ours 9) just opened.
    struct T {
        now: Instant,
        host: Host,
        out: Out,
        c: Conn,
    }

    impl T {
        fn established(room: usize) -> T {
            let now = Instant::now();
            let mut out = Out::default();
            let mut c = Conn::from_syn(&seg(1000, 0, SYN, 64240, b""), 5000, 1460, 4096);
            c.host_connected(now, &mut out);
            let (h, _) = out.segs.pop().unwrap();
            assert_eq!((h.flags, h.seq, h.ack), (SYN | ACK, 5000, 1001));
            assert_eq!(h.syn.unwrap().wscale, Some(OUR_WSCALE));
            let mut t = T {
                now,
                host: Host {
                    room,
                    ..Default::default()
                },
                out,
                c,
            };
            assert_eq!(t.feed(seg(1001, 5001, ACK, 1000, b"")), Next::Continue);
            assert_eq!(t.c.state, State::Established);
            t
        }

        fn published() -> T {
            let now = Instant::now();
            let mut out = Out::default();
            let c = Conn::open(9, 1460, 4096, now, &mut out);
            let host = Host {
                room: 1 << 20,
                ..Default::default()
            };
            T { now, host, out, c }
        }

        fn feed(&mut self, s: Seg<'_>) -> Next {
            self.c.segment(&s, self.now, &mut self.host, &mut self.out)
        }

        /// The ACK the connection sends now.
        fn ack(&mut self) -> u32 {
            self.c.send_ack(&mut self.out);
            self.out.segs.last().unwrap().0.ack
        }
    }

    #[test]
    fn a_stale_connections_ack_to_our_syn_is_reset_and_the_syn_sent_again_once() {
        let mut t = T::published();
        let (syn, _) = t.out.segs.pop().unwrap();
        assert_eq!((syn.flags, syn.seq), (SYN, 9));
        // The endpoint's TIME_WAIT socket for these addresses answers with a bare ACK.
        assert_eq!(t.feed(seg(777, 4242, ACK, 1000, b"")), Next::Continue);
        let sent: Vec<(u8, u32)> = t.out.segs.iter().map(|(h, _)| (h.flags, h.seq)).collect();
        assert_eq!(sent, [(RST, 4242), (SYN, 9)]);
        // A second stale ACK gets the RST but no immediate SYN (the timer retries).
        t.out.segs.clear();
        t.feed(seg(777, 4242, ACK, 1000, b""));
        let sent: Vec<u8> = t.out.segs.iter().map(|(h, _)| h.flags).collect();
        assert_eq!(sent, [RST]);
        // The real answer still completes the connection.
        t.feed(seg(100, 10, SYN | ACK, 1000, b""));
        assert_eq!(t.c.state, State::Established);
    }

    #[test]
    fn data_from_the_endpoint_reaches_the_host_in_order_and_is_acked() {
        let mut t = T::established(1 << 20);
        t.feed(seg(1001, 5001, ACK, 1000, b"hello "));
        // Out of order: kept, duplicate ACK owed.
        t.feed(seg(1020, 5001, ACK, 1000, b"later"));
        // Overlapping retransmission: only the new part is taken.
        t.feed(seg(1004, 5001, ACK, 1000, b"lo world"));
        assert_eq!(t.host.got, b"hello world");
        assert!(t.c.ack_owed);
        assert_eq!(t.ack(), 1012);
    }

    #[test]
    fn out_of_order_segments_are_kept_until_the_hole_is_filled() {
        let mut t = T::established(1 << 20);
        t.feed(seg(1006, 5001, ACK, 1000, b"world"));
        t.feed(seg(1011, 5001, ACK | FIN, 1000, b"!"));
        assert!(t.host.got.is_empty(), "nothing passes the hole");
        t.feed(seg(1001, 5001, ACK, 1000, b"hello"));
        assert_eq!(t.host.got, b"helloworld!");
        assert!(t.host.shut, "the kept FIN is delivered too");
        assert_eq!(t.ack(), 1013);
    }

    #[test]
    fn a_slow_host_fills_the_buffer_and_closes_the_window() {
        let mut t = T::established(0);
        let data = vec![7u8; 5000];
        t.feed(seg(1001, 5001, ACK, 1000, &data));
        assert_eq!(
            t.c.to_host.len(),
            4096,
            "what fits is buffered, the rest dropped"
        );
        assert_eq!(t.c.window(), 0);
        t.host.room = 10_000;
        t.c.flush(&mut t.host).unwrap();
        assert_eq!(t.host.got.len(), 4096);
        assert!(t.c.ack_owed, "the reopened window is announced");
        assert_eq!(t.ack(), 1001 + 4096);
    }

    #[test]
    fn host_data_goes_out_within_the_window_and_is_resent_after_loss() {
        let mut t = T::established(1 << 20);
        // The endpoint's window: 10 << 7 = 1280 bytes.
        t.feed(seg(1001, 5001, ACK, 10, b""));
        let src = vec![1u8; 3000];
        let mut off = 0;
        t.c.fill(|b| {
            if off == src.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(src.len() - off);
            b[..n].copy_from_slice(&src[off..off + n]);
            off += n;
            Ok(n)
        })
        .unwrap();
        t.out.segs.clear();
        t.c.push(t.now, &mut t.out);
        let sent: usize = t.out.segs.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(sent, 1280);
        // Timeout: back to the first unacknowledged byte.
        t.out.segs.clear();
        t.c.tick(t.now + Duration::from_secs(1), &mut t.out);
        assert_eq!(t.out.segs[0].0.seq, 5001);
        // The ACK frees the buffer and opens the window.
        t.feed(seg(1001, 5001 + 1280, ACK, 100, b""));
        assert_eq!(t.c.to_cont.len(), 3000 - 1280);
    }

    #[test]
    fn fins_both_ways_end_the_connection() {
        let mut t = T::established(1 << 20);
        assert_eq!(
            t.feed(seg(1001, 5001, ACK | FIN, 100, b"bye")),
            Next::Continue
        );
        assert!(t.host.shut, "the endpoint's FIN is the destination's FIN");
        assert_eq!(t.c.fill(|_| Ok(0)).unwrap(), ReadEnd::Eof);
        t.c.push(t.now, &mut t.out);
        let (h, _) = t.out.segs.last().unwrap();
        assert_eq!(h.flags, FIN | ACK);
        assert_eq!(h.ack, 1005);
        assert_eq!(t.feed(seg(1005, 5002, ACK, 100, b"")), Next::Done);
    }

    #[test]
    fn the_endpoints_fin_is_acknowledged_when_its_ack_of_ours_ends_the_connection() {
        let mut t = T::established(1 << 20);
        // The destination closes first: our FIN.
        assert_eq!(t.c.fill(|_| Ok(0)).unwrap(), ReadEnd::Eof);
        t.c.push(t.now, &mut t.out);
        let (h, _) = t.out.segs.last().unwrap();
        assert_eq!((h.flags, h.ack), (FIN | ACK, 1001));
        t.out.segs.clear();
        // One burst (its ACKs are owed until it ends): the endpoint's FIN, then its ACK of ours.
        assert_eq!(t.feed(seg(1001, 5001, ACK | FIN, 100, b"")), Next::Continue);
        assert!(t.out.segs.is_empty() && t.c.ack_owed);
        assert_eq!(t.feed(seg(1002, 5002, ACK, 100, b"")), Next::Done);
        // Acknowledged before the connection is forgotten: nothing left owed.
        let (h, _) = t.out.segs.last().expect("the ACK of the endpoint's FIN");
        assert_eq!((h.flags, h.seq, h.ack), (ACK, 5002, 1002));
        assert!(!t.c.ack_owed);
    }

    #[test]
    fn reset_and_silence_abort() {
        let mut t = T::established(1 << 20);
        assert_eq!(t.feed(seg(1001, 0, RST, 0, b"")), Next::Abort);
        let mut t = T::published();
        let mut at = t.now;
        let mut next = Next::Continue;
        for _ in 0..20 {
            at += RTO_MAX;
            next = t.c.tick(at, &mut t.out);
            if next != Next::Continue {
                break;
            }
        }
        assert_eq!(next, Next::Abort, "an endpoint that never answers our SYN");
    }

    #[test]
    fn published_connection_handshake() {
        let mut t = T::published();
        assert_eq!(t.out.segs[0].0.flags, SYN);
        t.feed(seg(500, 10, SYN | ACK, 64240, b""));
        assert_eq!(t.c.state, State::Established);
        assert_eq!(t.out.segs.last().unwrap().0.ack, 501);
    }

    #[test]
    fn a_full_switch_queue_blocks_and_resumes() {
        let mut t = T::established(1 << 20);
        t.c.to_cont.push(b"abc");
        t.out.full = true;
        t.c.push(t.now, &mut t.out);
        assert!(t.c.blocked);
        t.out.full = false;
        t.c.push(t.now, &mut t.out);
        assert!(!t.c.blocked);
        assert_eq!(t.out.segs.last().unwrap().1, b"abc");
    }

    #[test]
    fn probes_and_keepalives_are_answered() {
        let mut t = T::established(1 << 20);
        t.c.ack_owed = false;
        // A zero-window probe / keepalive: an old sequence number, no payload.
        t.feed(seg(1000, 5001, ACK, 1000, b""));
        assert!(t.c.ack_owed);
        assert_eq!(t.ack(), 1001);
    }
}
