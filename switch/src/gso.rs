//! Software GSO segmentation and checksum completion.
//!
//! A port with offloads (TAP with IFF_VNET_HDR and TSO/USO on, AF_PACKET with PACKET_VNET_HDR)
//! may hand the switch a *super-frame*: one Ethernet frame carrying up to 64 KiB of TCP or UDP
//! payload, with a virtio-net header asking for it to be cut into segments of at most
//! `gso_size` payload bytes, and often a *partial* L4 checksum (NEEDS_CSUM: the checksum field
//! holds only the pseudo-header sum). An egress port that cannot take such frames gets them
//! through [`segment`]: every segment is a complete, standalone Ethernet frame with final IP and
//! L4 checksums.
//!
//! # What is supported
//! - TCPv4 (TSO), TCPv6 (TSO6) and UDP_L4 (USO) over IPv4 and IPv6, untagged or with one
//!   802.1Q tag. The ECN bit is accepted (CWR is kept on the first segment only, always).
//! - IPv4 options and TCP options are copied into every segment as they are.
//! - Not supported, each a distinct [`GsoError`]: UFO (`gso_type` 3), unknown GSO types, IPv4
//!   super-frames that are fragments, IPv6 extension headers (including BIG TCP's hop-by-hop
//!   jumbo option; so the payload stays within 64 KiB), and QinQ (a second tag is not looked
//!   through).
//!
//! # Trust
//! The frame comes from a guest or a container: every offset is checked against the frame and
//! no input makes this module panic. The header length is recomputed from the packet
//! (Ethernet + IP + TCP/UDP); `hdr_len` from the virtio-net header is only a hint (Linux sets it
//! to the skb's linear length, which may include payload), so it is only checked not to point
//! past the frame. With NEEDS_CSUM on a GSO frame, `csum_start`/`csum_offset` must point at the
//! L4 checksum of the parsed packet, which catches a header that does not describe the frame.
//! Bytes after the IP packet (Ethernet padding) are dropped from the segments.
//!
//! # Cost
//! No allocation once the caller's `scratch` buffer is warm: each segment is built in it
//! (`clear` + `extend_from_slice`, capacity kept) and handed to `emit` by reference. Each
//! segment is summed once (headers + payload) with [`crate::wire::checksum`].

use std::io;

use crate::wire::checksum;
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::ip::{IpProtocol, Lengths};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::{self, UdpPacket, UDP_HDR_LEN};
use crate::wire::vnet::{GsoType, VnetHdrRepr, VIRTIO_NET_HDR_GSO_UDP};
use crate::wire::WireError;

/// Offsets inside an IPv6 header (no IPv6 view yet: issue 15 brings one of the IPv4 view's
/// shape, and this module goes).
mod ipv6 {
    pub const HDR_LEN: usize = 40;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Why a frame could not be segmented or its checksum completed.
#[derive(Debug, thiserror::Error)]
pub enum GsoError {
    /// The Ethernet header is cut short.
    #[error("malformed Ethernet header: {0}")]
    Ethernet(#[from] WireError),
    /// `gso_size` is zero on a GSO frame.
    #[error("GSO frame with gso_size 0")]
    ZeroGsoSize,
    /// The caller's segment size limit is zero.
    #[error("segment size limit is 0")]
    ZeroSegSizeLimit,
    /// UFO (`gso_type` 3) is deprecated and not implemented.
    #[error("UDP fragmentation offload (UFO, gso_type 3) is not supported")]
    UfoUnsupported,
    /// A `gso_type` this module does not know.
    #[error("unknown GSO type {0}")]
    UnknownGsoType(u8),
    /// The EtherType does not carry the IP version the GSO type needs.
    #[error("GSO type {gso:?} needs {expected}, but the frame's EtherType is {found}")]
    EtherTypeMismatch {
        /// The frame's GSO type.
        gso: GsoType,
        /// What it needs ("IPv4", "IPv6" or "IPv4 or IPv6").
        expected: &'static str,
        /// The EtherType after any 802.1Q tag.
        found: EtherType,
    },
    /// The IP header's version field disagrees with the EtherType.
    #[error("IP version field is {found}, expected {expected} for the frame's EtherType")]
    IpVersionMismatch {
        /// 4 or 6.
        expected: u8,
        /// The version nibble found.
        found: u8,
    },
    /// The IPv4 IHL is below 5 words.
    #[error("IPv4 header length {0} bytes is below the 20-byte minimum")]
    BadIpv4HeaderLen(usize),
    /// The IPv4 super-frame is itself a fragment.
    #[error("IPv4 super-frame is a fragment (MF set or fragment offset non-zero)")]
    Ipv4Fragment,
    /// The IP packet does not carry the L4 protocol the GSO type needs, directly after the
    /// fixed IP header.
    #[error(
        "GSO type {gso:?} needs IP protocol {expected} right after the IP header, found {found} \
         (IPv6 extension headers are not supported)"
    )]
    L4ProtocolMismatch {
        /// The frame's GSO type.
        gso: GsoType,
        /// 6 (TCP) or 17 (UDP).
        expected: u8,
        /// The protocol / next header found.
        found: u8,
    },
    /// The TCP data offset is below 5 words.
    #[error("TCP header length {0} bytes is below the 20-byte minimum")]
    BadTcpHeaderLen(usize),
    /// A header or the IP payload runs past the end of the frame.
    #[error("frame truncated: the {what} ends at byte {need}, the frame has {have} bytes")]
    Truncated {
        /// Which part is cut short.
        what: &'static str,
        /// Offset in the Ethernet frame where that part ends.
        need: usize,
        /// Length of the Ethernet frame.
        have: usize,
    },
    /// The IP length field ends the packet inside its own L4 header.
    #[error(
        "IP length ends the packet at byte {ip_end}, before the headers end at byte {hdr_end}"
    )]
    IpLengthTooShort {
        /// Where the IP length says the packet ends.
        ip_end: usize,
        /// Where Ethernet + IP + L4 headers end.
        hdr_end: usize,
    },
    /// The virtio-net `hdr_len` points past the frame.
    #[error("virtio-net hdr_len {hdr_len} is beyond the {frame_len}-byte frame")]
    HdrLenBeyondFrame {
        /// The header's `hdr_len`.
        hdr_len: usize,
        /// Length of the Ethernet frame.
        frame_len: usize,
    },
    /// `csum_start + csum_offset + 2` is past the end of the frame.
    #[error(
        "checksum field at csum_start {csum_start} + csum_offset {csum_offset} does not fit the \
         {frame_len}-byte frame"
    )]
    ChecksumOutOfRange {
        /// The header's `csum_start`.
        csum_start: usize,
        /// The header's `csum_offset`.
        csum_offset: usize,
        /// Length of the Ethernet frame.
        frame_len: usize,
    },
    /// With NEEDS_CSUM on a GSO frame, the checksum fields do not point at the L4 checksum.
    #[error(
        "csum_start {csum_start}/csum_offset {csum_offset} do not point at the L4 checksum \
         (L4 header at byte {l4_offset}, checksum at offset {expected_offset})"
    )]
    ChecksumMismatch {
        /// The header's `csum_start`.
        csum_start: usize,
        /// The header's `csum_offset`.
        csum_offset: usize,
        /// Where the parsed L4 header starts.
        l4_offset: usize,
        /// Offset of the checksum in that L4 header (16 for TCP, 6 for UDP).
        expected_offset: usize,
    },
    /// The `emit` callback failed; segmentation stopped there.
    #[error("emitting a segment failed: {0}")]
    Emit(#[source] io::Error),
}

/// Fills in the partial L4 checksum of a NEEDS_CSUM frame (`frame` is the Ethernet frame,
/// without the virtio-net header).
///
/// The 16-bit field at `csum_start + csum_offset` must hold the pseudo-header sum; the
/// checksum of `frame[csum_start..]` (field included) replaces it. A result of 0 is written as
/// 0xffff, as Linux does, which keeps UDP's "no checksum" value out.
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), GsoError> {
    let frame_len = frame.len();
    let out_of_range = || GsoError::ChecksumOutOfRange {
        csum_start,
        csum_offset,
        frame_len,
    };
    let field = csum_start
        .checked_add(csum_offset)
        .ok_or_else(out_of_range)?;
    let field_end = field.checked_add(2).ok_or_else(out_of_range)?;
    if field_end > frame_len {
        return Err(out_of_range());
    }
    let covered = frame.get(csum_start..).ok_or_else(out_of_range)?;
    let sum = !checksum::fold(checksum::add(0, covered));
    let sum = if sum == 0 { 0xffff } else { sum };
    frame
        .get_mut(field..field_end)
        .ok_or_else(out_of_range)?
        .copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Cuts a frame into standalone Ethernet frames, each handed to `emit`, and returns how many
/// were emitted.
///
/// `frame` is the Ethernet frame without the virtio-net header `hdr`. A non-GSO frame is
/// emitted once: as is, or copied into `scratch` with its checksum completed when
/// `hdr.needs_csum`. A GSO frame is cut into segments of at most `gso_size` payload bytes,
/// lowered further to `seg_size_limit` if given (e.g. from the egress MTU); every segment gets
/// its IP length, IPv4 id (+1 per segment) and header checksum, TCP sequence number and flags
/// (FIN/PSH on the last segment only, CWR on the first only) or UDP length, and a full L4
/// checksum. A GSO frame whose payload fits one segment (or is empty) gives one segment.
///
/// `scratch` is reused across calls; once it has grown to one segment no call allocates. If
/// `emit` fails, segmentation stops and the error comes back as [`GsoError::Emit`].
pub fn segment(
    hdr: &VnetHdrRepr,
    frame: &[u8],
    seg_size_limit: Option<u16>,
    scratch: &mut Vec<u8>,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<usize, GsoError> {
    segment_with_prefix(hdr, frame, seg_size_limit, &[], scratch, emit)
}

/// Like [`segment`], but every emitted buffer is a switch frame: an all-zero virtio-net header
/// ([`VnetHdrRepr::NONE`]) followed by the segment. For ports that take a vnet header but no
/// offloads; saves the caller a copy per segment.
pub fn segment_with_vnet_hdr(
    hdr: &VnetHdrRepr,
    frame: &[u8],
    seg_size_limit: Option<u16>,
    scratch: &mut Vec<u8>,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<usize, GsoError> {
    let prefix = VnetHdrRepr::NONE.to_bytes();
    segment_with_prefix(hdr, frame, seg_size_limit, &prefix, scratch, emit)
}

/// Where the headers of a GSO super-frame are, all offsets from the start of the Ethernet
/// frame. Invariant (checked by [`Layout::parse`]):
/// `l3_off < l4_off < payload_off <= ip_end <= frame.len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    l3_off: usize,
    l4_off: usize,
    payload_off: usize,
    ip_end: usize,
    is_ipv6: bool,
    is_udp: bool,
}

impl Layout {
    fn parse(gso: GsoType, frame: &[u8]) -> Result<Layout, GsoError> {
        let have = frame.len();
        let truncated = |what, need| GsoError::Truncated { what, need, have };
        let eth = EthernetFrame::new_checked(frame)?;
        let l3_off = eth.header_len();
        let ethertype = eth.ethertype();
        let (is_ipv6, is_udp) = match (gso, ethertype) {
            (GsoType::TcpV4, EtherType::Ipv4) => (false, false),
            (GsoType::TcpV6, EtherType::Ipv6) => (true, false),
            (GsoType::UdpL4, EtherType::Ipv4) => (false, true),
            (GsoType::UdpL4, EtherType::Ipv6) => (true, true),
            (GsoType::TcpV4 | GsoType::TcpV6 | GsoType::UdpL4, found) => {
                let expected = match gso {
                    GsoType::TcpV4 => "IPv4",
                    GsoType::TcpV6 => "IPv6",
                    _ => "IPv4 or IPv6",
                };
                return Err(GsoError::EtherTypeMismatch {
                    gso,
                    expected,
                    found,
                });
            }
            (GsoType::None, _) | (GsoType::Unknown(_), _) => {
                return Err(unsupported_gso_type(gso));
            }
        };
        let l4_proto = if is_udp {
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        };
        let l3 = frame.get(l3_off..).unwrap_or_default();

        let (l4_off, ip_end, protocol) = if is_ipv6 {
            let ip = l3
                .get(..ipv6::HDR_LEN)
                .ok_or_else(|| truncated("IPv6 header", l3_off + ipv6::HDR_LEN))?;
            let version = ip[0] >> 4;
            if version != 6 {
                return Err(GsoError::IpVersionMismatch {
                    expected: 6,
                    found: version,
                });
            }
            let payload_len = usize::from(read_u16(ip, ipv6::PAYLOAD_LEN));
            let l4_off = l3_off + ipv6::HDR_LEN;
            (l4_off, l4_off + payload_len, ip[ipv6::NEXT_HEADER])
        } else {
            // Lengths::Gso: a super-frame's total length may be 0 (see `wire::ip::Lengths`).
            let ip = Ipv4Packet::new_checked_with(l3, Lengths::Gso)
                .map_err(|e| ipv4_error(e, l3, l3_off, have))?;
            if ip.is_fragment() {
                return Err(GsoError::Ipv4Fragment);
            }
            (
                l3_off + ip.header_len(),
                l3_off + ip.packet_len(),
                u8::from(ip.protocol()),
            )
        };
        if protocol != l4_proto {
            return Err(GsoError::L4ProtocolMismatch {
                gso,
                expected: l4_proto,
                found: protocol,
            });
        }
        if l4_off > have {
            return Err(truncated("IPv6 header", l4_off));
        }

        // The L4 headers are viewed over the rest of the frame, not the IP payload, so a
        // length field ending the packet inside them is told apart from a cut frame.
        let l4 = frame.get(l4_off..).unwrap_or_default();
        let payload_off = if is_udp {
            UdpPacket::new_checked_with(l4, Lengths::Gso)
                .map_err(|_| truncated("UDP header", l4_off + UDP_HDR_LEN))?;
            l4_off + UDP_HDR_LEN
        } else {
            let tcp = TcpPacket::new_checked(l4).map_err(|e| match e {
                WireError::Truncated { what, need, .. } => truncated(what, l4_off + need),
                WireError::Malformed { .. } => {
                    GsoError::BadTcpHeaderLen(TcpPacket::new_unchecked(l4).header_len())
                }
            })?;
            l4_off + tcp.header_len()
        };
        if ip_end > have {
            return Err(truncated("IP packet (per its length field)", ip_end));
        }
        if ip_end < payload_off {
            return Err(GsoError::IpLengthTooShort {
                ip_end,
                hdr_end: payload_off,
            });
        }
        Ok(Layout {
            l3_off,
            l4_off,
            payload_off,
            ip_end,
            is_ipv6,
            is_udp,
        })
    }

    /// Offset of the L4 checksum within the L4 header.
    fn csum_offset(&self) -> usize {
        if self.is_udp {
            udp::CHECKSUM_OFFSET
        } else {
            tcp::CHECKSUM_OFFSET
        }
    }
}

fn unsupported_gso_type(gso: GsoType) -> GsoError {
    match gso {
        GsoType::Unknown(VIRTIO_NET_HDR_GSO_UDP) => GsoError::UfoUnsupported,
        other => GsoError::UnknownGsoType(u8::from(other)),
    }
}

/// The [`GsoError`] of an IPv4 header the view refused (`l3` is the frame from `l3_off`, at
/// least 20 bytes when the view found it malformed rather than cut short).
fn ipv4_error(e: WireError, l3: &[u8], l3_off: usize, have: usize) -> GsoError {
    match e {
        WireError::Truncated { what, need, .. } => GsoError::Truncated {
            what,
            need: l3_off + need,
            have,
        },
        WireError::Malformed { .. } => {
            let ip = Ipv4Packet::new_unchecked(l3);
            let (version, hl) = (ip.version(), ip.header_len());
            if version != 4 {
                GsoError::IpVersionMismatch {
                    expected: 4,
                    found: version,
                }
            } else if hl < crate::wire::ipv4::IPV4_HDR_LEN {
                GsoError::BadIpv4HeaderLen(hl)
            } else {
                GsoError::IpLengthTooShort {
                    ip_end: l3_off + usize::from(ip.total_len()),
                    hdr_end: l3_off + hl,
                }
            }
        }
    }
}

/// Reads a big-endian u16 at `off`; the caller has checked `off + 2 <= b.len()`.
fn read_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Writes a big-endian u16 at `off`; the caller has checked `off + 2 <= b.len()`.
fn write_u16(b: &mut [u8], off: usize, v: u16) {
    crate::wire::set_be16(b, off, v);
}

/// Like [`segment`], but every emitted buffer is `prefix` followed by the segment (or the
/// non-GSO frame): a vnet header for [`segment_with_vnet_hdr`], a VXLAN header for a tunnel.
pub fn segment_with_prefix(
    hdr: &VnetHdrRepr,
    frame: &[u8],
    seg_size_limit: Option<u16>,
    prefix: &[u8],
    scratch: &mut Vec<u8>,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<usize, GsoError> {
    if hdr.gso_type == GsoType::None && !hdr.needs_csum && prefix.is_empty() {
        emit(frame).map_err(GsoError::Emit)?;
        return Ok(1);
    }
    scratch.clear();
    segment_into(
        hdr,
        frame,
        seg_size_limit,
        prefix,
        false,
        scratch,
        &mut |buf: &mut Vec<u8>, start| {
            let r = emit(&buf[start..]);
            buf.clear();
            r
        },
    )
}

/// Like [`segment_with_prefix`], but each `prefix` + segment is appended to `out` (after what
/// it holds) and `emit(out, start)` is called with the offset where it starts; `emit` may take
/// what `out` holds and truncate it. A tunnel thus builds its batch of datagrams in place:
/// each segment is written once, where it is sent from, not built in a scratch buffer and
/// copied.
///
/// With `leave_partial`, the L4 checksums are left partial (the field holds the pseudo-header
/// sum of each segment, as a NEEDS_CSUM frame's does) instead of computed: for a receiver
/// that completes them itself (a netyard VTEP, see [`crate::overlay::hello_frame`]). A
/// non-GSO NEEDS_CSUM frame then goes as it is.
pub fn segment_into(
    hdr: &VnetHdrRepr,
    frame: &[u8],
    seg_size_limit: Option<u16>,
    prefix: &[u8],
    leave_partial: bool,
    out: &mut Vec<u8>,
    emit: &mut dyn FnMut(&mut Vec<u8>, usize) -> io::Result<()>,
) -> Result<usize, GsoError> {
    match hdr.gso_type {
        GsoType::None => {
            let start = out.len();
            out.extend_from_slice(prefix);
            out.extend_from_slice(frame);
            if hdr.needs_csum && !leave_partial {
                let done = complete_checksum(
                    out.get_mut(start + prefix.len()..).unwrap_or_default(),
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                );
                if let Err(e) = done {
                    out.truncate(start);
                    return Err(e);
                }
            }
            emit(out, start).map_err(GsoError::Emit)?;
            return Ok(1);
        }
        GsoType::TcpV4 | GsoType::TcpV6 | GsoType::UdpL4 => {}
        GsoType::Unknown(_) => return Err(unsupported_gso_type(hdr.gso_type)),
    }
    if hdr.gso_size == 0 {
        return Err(GsoError::ZeroGsoSize);
    }
    let mss = match seg_size_limit {
        Some(0) => return Err(GsoError::ZeroSegSizeLimit),
        Some(limit) => usize::from(hdr.gso_size.min(limit)),
        None => usize::from(hdr.gso_size),
    };
    let hdr_len = usize::from(hdr.hdr_len);
    if hdr_len > frame.len() {
        return Err(GsoError::HdrLenBeyondFrame {
            hdr_len,
            frame_len: frame.len(),
        });
    }
    let layout = Layout::parse(hdr.gso_type, frame)?;
    if hdr.needs_csum {
        let csum_start = usize::from(hdr.csum_start);
        let csum_offset = usize::from(hdr.csum_offset);
        if csum_start != layout.l4_off || csum_offset != layout.csum_offset() {
            return Err(GsoError::ChecksumMismatch {
                csum_start,
                csum_offset,
                l4_offset: layout.l4_off,
                expected_offset: layout.csum_offset(),
            });
        }
    }
    let Some(headers) = frame.get(..layout.payload_off) else {
        return Err(GsoError::Truncated {
            what: "headers",
            need: layout.payload_off,
            have: frame.len(),
        });
    };
    let Some(payload) = frame.get(layout.payload_off..layout.ip_end) else {
        return Err(GsoError::Truncated {
            what: "IP packet (per its length field)",
            need: layout.ip_end,
            have: frame.len(),
        });
    };
    // An empty payload still gives one (header-only) segment, as Linux does.
    let nseg = payload.len().div_ceil(mss).max(1);
    let segs = Segmenter::new(&layout, headers, leave_partial);
    let mut emitted = 0;
    for i in 0..nseg {
        let start = i * mss;
        let end = payload.len().min(start + mss);
        let chunk = payload.get(start..end).unwrap_or_default();
        let at = out.len();
        out.extend_from_slice(prefix);
        out.extend_from_slice(headers);
        out.extend_from_slice(chunk);
        segs.fix_up(out, at + prefix.len(), i, i + 1 == nseg, start);
        emit(out, at).map_err(GsoError::Emit)?;
        emitted += 1;
    }
    Ok(emitted)
}

/// What stays constant across the segments of one super-frame.
struct Segmenter<'a> {
    layout: &'a Layout,
    /// Pseudo-header sum of the addresses and the protocol (length added per segment).
    pseudo: u64,
    ip_id: u16,
    tcp_seq: u32,
    tcp_flags: u8,
    /// Leave L4 checksums partial ([`segment_into`]'s `leave_partial`).
    partial: bool,
}

impl<'a> Segmenter<'a> {
    /// `headers` is the super-frame up to the payload; its layout is `layout` (so the views
    /// below are in bounds: [`Layout::parse`] checked them over the same bytes).
    fn new(layout: &'a Layout, headers: &[u8], partial: bool) -> Segmenter<'a> {
        let l3 = &headers[layout.l3_off..];
        let proto = if layout.is_udp {
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        };
        let (addrs, ip_id) = if layout.is_ipv6 {
            (checksum::add(0, &l3[ipv6::SRC..ipv6::DST + 16]), 0)
        } else {
            let ip = Ipv4Packet::new_unchecked(l3);
            let a = checksum::add(checksum::add(0, &ip.src_octets()), &ip.dst_octets());
            (a, ip.ident())
        };
        let pseudo = checksum::combine(addrs, u64::from(proto));
        let (tcp_seq, tcp_flags) = if layout.is_udp {
            (0, 0)
        } else {
            let tcp = TcpPacket::new_unchecked(&headers[layout.l4_off..]);
            (tcp.seq_number(), tcp.flags())
        };
        Segmenter {
            layout,
            pseudo,
            ip_id,
            tcp_seq,
            tcp_flags,
            partial,
        }
    }

    /// Rewrites the headers of segment `index` (payload starting `offset` bytes into the
    /// super-frame's payload) built in `buf` at `base`.
    ///
    /// `buf[base..]` is the super-frame's headers followed by this segment's payload, so every
    /// header offset of the layout is in bounds, and lengths fit their fields because a segment
    /// is never longer than the super-frame.
    fn fix_up(&self, buf: &mut [u8], base: usize, index: usize, last: bool, offset: usize) {
        let Some(seg) = buf.get_mut(base..) else {
            return;
        };
        let lay = self.layout;
        let l4_len = seg.len() - lay.l4_off;
        // l4_len <= the super-frame's, which fits 16 bits (IPv4 total length, IPv6 payload
        // length); the conversions below cannot fail.
        let l4_len16 = u16::try_from(l4_len).unwrap_or(u16::MAX);
        if lay.is_ipv6 {
            write_u16(&mut seg[lay.l3_off..], ipv6::PAYLOAD_LEN, l4_len16);
        } else {
            let ip_len = u16::try_from(seg.len() - lay.l3_off).unwrap_or(u16::MAX);
            let index16 = u16::try_from(index & 0xffff).unwrap_or(0);
            let mut ip = Ipv4Packet::new_unchecked(&mut seg[lay.l3_off..lay.l4_off]);
            ip.set_total_len(ip_len);
            ip.set_ident(self.ip_id.wrapping_add(index16));
            ip.fill_checksum();
        }
        let pseudo = checksum::combine(self.pseudo, u64::from(l4_len16));
        let l4 = &mut seg[lay.l4_off..];
        if lay.is_udp {
            let mut udp = UdpPacket::new_unchecked(l4);
            udp.set_len(l4_len16);
            if self.partial {
                // Never zero ("no checksum"): the pseudo-header holds the non-zero protocol.
                udp.set_checksum(checksum::fold(pseudo));
            } else {
                udp.fill_checksum(pseudo);
            }
        } else {
            let mut tcp = TcpPacket::new_unchecked(l4);
            let seq = self
                .tcp_seq
                .wrapping_add(u32::try_from(offset).unwrap_or(0));
            tcp.set_seq_number(seq);
            let mut flags = self.tcp_flags;
            if !last {
                flags &= !(tcp::flags::FIN | tcp::flags::PSH);
            }
            if index != 0 {
                flags &= !tcp::flags::CWR;
            }
            tcp.set_flags(flags);
            if self.partial {
                tcp.fill_partial_checksum(pseudo);
            } else {
                tcp.fill_checksum(pseudo);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::vnet::{VnetHdr, VNET_HDR_LEN};
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
    const SRC4: [u8; 4] = [10, 0, 0, 1];
    const DST4: [u8; 4] = [10, 0, 0, 2];
    const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const SEQ0: u32 = 0xffff_f000; // wraps during the test
    const IP_ID0: u16 = 0xfffe; // wraps too

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next() as u8;
            }
        }
    }

    /// Straight RFC 1071, independent of `crate::wire::checksum`.
    fn naive_sum(parts: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(p);
        }
        let mut sum: u32 = 0;
        for w in bytes.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn payload(len: usize) -> Vec<u8> {
        let mut rng = Rng(0xfeed_beef);
        let mut p = vec![0; len];
        rng.fill(&mut p);
        p
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Tcp4,
        Tcp6,
        Udp4,
        Udp6,
    }

    impl Kind {
        fn gso(self) -> GsoType {
            match self {
                Kind::Tcp4 => GsoType::TcpV4,
                Kind::Tcp6 => GsoType::TcpV6,
                Kind::Udp4 | Kind::Udp6 => GsoType::UdpL4,
            }
        }
        fn v6(self) -> bool {
            matches!(self, Kind::Tcp6 | Kind::Udp6)
        }
        fn udp(self) -> bool {
            matches!(self, Kind::Udp4 | Kind::Udp6)
        }
    }

    /// Builds a super-frame the way a TSO/USO sender does: full lengths, IPv4 id `IP_ID0`,
    /// the L4 checksum field holding the pseudo-header sum, and the matching vnet header.
    fn super_frame(kind: Kind, vlan: bool, data: &[u8], gso_size: u16) -> (VnetHdrRepr, Vec<u8>) {
        let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let mut out = Vec::new();
        macro_rules! finish {
            ($ip:expr) => {{
                if kind.udp() {
                    $ip.udp(5000, 6000).write(&mut out, data).expect("build");
                } else {
                    $ip.tcp(40000, 80, SEQ0, 512)
                        .ack(77)
                        .fin()
                        .psh()
                        .cwr()
                        .options(&[
                            etherparse::TcpOptionElement::Noop,
                            etherparse::TcpOptionElement::Noop,
                            etherparse::TcpOptionElement::Timestamp(1, 2),
                        ])
                        .expect("options")
                        .write(&mut out, data)
                        .expect("build");
                }
            }};
        }
        match (vlan, kind.v6()) {
            (false, false) => finish!(b.ipv4(SRC4, DST4, 64)),
            (false, true) => finish!(b.ipv6(SRC6, DST6, 64)),
            (true, false) => {
                finish!(b
                    .single_vlan(100.try_into().expect("vid"))
                    .ipv4(SRC4, DST4, 64))
            }
            (true, true) => {
                finish!(b
                    .single_vlan(100.try_into().expect("vid"))
                    .ipv6(SRC6, DST6, 64))
            }
        }
        let l3 = if vlan { 18 } else { 14 };
        let l4 = l3 + if kind.v6() { 40 } else { 20 };
        if !kind.v6() {
            out[l3 + 4..l3 + 6].copy_from_slice(&IP_ID0.to_be_bytes());
            out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = !naive_sum(&[&out[l3..l3 + 20]]);
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let l4_len = out.len() - l4;
        let (csum_off, hdr_end) = if kind.udp() {
            (6, l4 + 8)
        } else {
            (16, l4 + 32)
        };
        let pseudo = if kind.v6() {
            checksum::pseudo_header_v6(&SRC6, &DST6, if kind.udp() { 17 } else { 6 }, l4_len as u32)
        } else {
            checksum::pseudo_header_v4(&SRC4, &DST4, if kind.udp() { 17 } else { 6 }, l4_len as u32)
        };
        let partial = checksum::fold(pseudo);
        out[l4 + csum_off..l4 + csum_off + 2].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdrRepr {
            needs_csum: true,
            data_valid: false,
            gso_type: kind.gso(),
            ecn: false,
            hdr_len: hdr_end as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: csum_off as u16,
        };
        (hdr, out)
    }

    fn collect(
        hdr: &VnetHdrRepr,
        frame: &[u8],
        limit: Option<u16>,
    ) -> Result<Vec<Vec<u8>>, GsoError> {
        let mut segs = Vec::new();
        let mut scratch = Vec::new();
        let n = segment(hdr, frame, limit, &mut scratch, &mut |s| {
            segs.push(s.to_vec());
            Ok(())
        })?;
        assert_eq!(n, segs.len());
        Ok(segs)
    }

    /// Parses every segment with etherparse and checks it against the super-frame.
    fn verify(kind: Kind, vlan: bool, segs: &[Vec<u8>], data: &[u8], mss: usize) {
        let nseg = data.len().div_ceil(mss).max(1);
        assert_eq!(segs.len(), nseg);
        let mut joined = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == nseg;
            let p = PacketHeaders::from_ethernet_slice(seg).expect("segment parses");
            assert_eq!(p.vlan.is_some(), vlan);
            let body = p.payload.slice();
            if last {
                assert_eq!(body.len(), data.len() - mss * (nseg - 1));
            } else {
                assert_eq!(body.len(), mss);
            }
            let l3 = if vlan { 18 } else { 14 };
            let (l4_off, pseudo) = match p.net.as_ref().expect("IP") {
                NetHeaders::Ipv4(ip, _) => {
                    assert!(!kind.v6());
                    assert_eq!(usize::from(ip.total_len), seg.len() - l3);
                    assert_eq!(ip.identification, IP_ID0.wrapping_add(i as u16));
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    assert_eq!(naive_sum(&[&seg[l3..l3 + 20]]), 0xffff);
                    let l4_len = (seg.len() - l3 - 20) as u16;
                    let mut ph = Vec::new();
                    ph.extend_from_slice(&SRC4);
                    ph.extend_from_slice(&DST4);
                    ph.extend_from_slice(&[0, if kind.udp() { 17 } else { 6 }]);
                    ph.extend_from_slice(&l4_len.to_be_bytes());
                    (l3 + 20, ph)
                }
                NetHeaders::Ipv6(ip, _) => {
                    assert!(kind.v6());
                    assert_eq!(usize::from(ip.payload_length), seg.len() - l3 - 40);
                    let mut ph = Vec::new();
                    ph.extend_from_slice(&SRC6);
                    ph.extend_from_slice(&DST6);
                    ph.extend_from_slice(&((seg.len() - l3 - 40) as u32).to_be_bytes());
                    ph.extend_from_slice(&[0, 0, 0, if kind.udp() { 17 } else { 6 }]);
                    (l3 + 40, ph)
                }
            };
            // Independent check: the whole L4 segment plus pseudo-header sums to 0xffff.
            assert_eq!(naive_sum(&[&pseudo, &seg[l4_off..]]), 0xffff, "segment {i}");
            match (
                p.transport.as_ref().expect("L4"),
                p.net.as_ref().expect("IP"),
            ) {
                (TransportHeader::Tcp(t), net) => {
                    assert!(!kind.udp());
                    let expect = match net {
                        NetHeaders::Ipv4(ip, _) => t.calc_checksum_ipv4(ip, body),
                        NetHeaders::Ipv6(ip, _) => t.calc_checksum_ipv6(ip, body),
                    };
                    assert_eq!(t.checksum, expect.expect("checksum"));
                    assert_eq!(t.sequence_number, SEQ0.wrapping_add((i * mss) as u32));
                    assert_eq!(t.acknowledgment_number, 77);
                    assert!(t.ack);
                    assert_eq!(t.fin, last, "FIN on segment {i}");
                    assert_eq!(t.psh, last, "PSH on segment {i}");
                    assert_eq!(t.cwr, i == 0, "CWR on segment {i}");
                    assert_eq!(t.header_len(), 32);
                }
                (TransportHeader::Udp(u), net) => {
                    assert!(kind.udp());
                    assert_eq!(usize::from(u.length), 8 + body.len());
                    let expect = match net {
                        NetHeaders::Ipv4(ip, _) => u.calc_checksum_ipv4(ip, body),
                        NetHeaders::Ipv6(ip, _) => u.calc_checksum_ipv6(ip, body),
                    };
                    assert_eq!(u.checksum, expect.expect("checksum"));
                    assert_ne!(u.checksum, 0);
                }
                _ => panic!("unexpected L4"),
            }
            joined.extend_from_slice(body);
        }
        assert_eq!(joined, data);
    }

    fn round_trip(kind: Kind, vlan: bool, len: usize, gso_size: u16, limit: Option<u16>) {
        let data = payload(len);
        let (hdr, frame) = super_frame(kind, vlan, &data, gso_size);
        let segs = collect(&hdr, &frame, limit).expect("segments");
        let mss = usize::from(limit.map_or(gso_size, |l| l.min(gso_size)));
        verify(kind, vlan, &segs, &data, mss);
    }

    // 64 KiB super-frames: the IPv4 total length caps the payload at 65535 - 20 - 32.
    const BIG4: usize = 65535 - 20 - 32;
    const BIG6: usize = 65535 - 32;

    #[test]
    fn tcpv4_64k() {
        round_trip(Kind::Tcp4, false, BIG4, 1448, None);
    }

    #[test]
    fn tcpv4_vlan_64k() {
        round_trip(Kind::Tcp4, true, BIG4, 1448, None);
    }

    #[test]
    fn tcpv6_64k() {
        round_trip(Kind::Tcp6, false, BIG6, 1428, None);
    }

    #[test]
    fn tcpv6_vlan_odd_mss() {
        round_trip(Kind::Tcp6, true, 20_001, 999, None);
    }

    #[test]
    fn udp_l4_v4_64k() {
        round_trip(Kind::Udp4, false, 65535 - 20 - 8, 1472, None);
    }

    #[test]
    fn udp_l4_v6_vlan() {
        round_trip(Kind::Udp6, true, 60_000, 1452, None);
    }

    #[test]
    fn seg_size_limit_lowers_mss() {
        round_trip(Kind::Tcp4, false, 10_000, 1448, Some(500));
        round_trip(Kind::Udp6, false, 10_000, 1000, Some(1400));
    }

    #[test]
    fn payload_fits_one_segment() {
        round_trip(Kind::Tcp4, false, 1000, 1448, None);
        round_trip(Kind::Tcp6, true, 1448, 1448, None);
        round_trip(Kind::Udp4, false, 1, 1448, None);
    }

    #[test]
    fn empty_payload_gives_one_segment() {
        round_trip(Kind::Tcp4, false, 0, 1448, None);
        round_trip(Kind::Udp6, false, 0, 1448, None);
    }

    #[test]
    fn exact_multiple_of_mss() {
        round_trip(Kind::Tcp4, false, 4 * 1000, 1000, None);
    }

    #[test]
    fn ignores_checksum_fields_without_needs_csum() {
        let data = payload(5000);
        let (mut hdr, mut frame) = super_frame(Kind::Tcp4, false, &data, 1448);
        hdr.needs_csum = false;
        hdr.csum_start = 0;
        hdr.csum_offset = 0;
        frame[14 + 20 + 16] ^= 0x5a; // garbage in the TCP checksum
        frame[14 + 10] ^= 0x5a; // and in the IPv4 header checksum
        let segs = collect(&hdr, &frame, None).expect("segments");
        verify(Kind::Tcp4, false, &segs, &data, 1448);
    }

    #[test]
    fn ethernet_padding_is_dropped() {
        let data = payload(3000);
        let (hdr, mut frame) = super_frame(Kind::Udp4, false, &data, 1000);
        frame.extend_from_slice(&[0xee; 7]);
        let segs = collect(&hdr, &frame, None).expect("segments");
        verify(Kind::Udp4, false, &segs, &data, 1000);
    }

    #[test]
    fn hdr_len_is_a_hint() {
        let data = payload(3000);
        let (mut hdr, frame) = super_frame(Kind::Tcp6, false, &data, 1000);
        for hint in [0u16, 1, 100, 200] {
            hdr.hdr_len = hint;
            let segs = collect(&hdr, &frame, None).expect("segments");
            verify(Kind::Tcp6, false, &segs, &data, 1000);
        }
        hdr.hdr_len = u16::try_from(frame.len() + 1).expect("small");
        assert!(matches!(
            collect(&hdr, &frame, None),
            Err(GsoError::HdrLenBeyondFrame { .. })
        ));
    }

    #[test]
    fn ecn_flag_is_accepted() {
        let data = payload(5000);
        let (mut hdr, frame) = super_frame(Kind::Tcp4, false, &data, 1448);
        hdr.ecn = true;
        let segs = collect(&hdr, &frame, None).expect("segments");
        verify(Kind::Tcp4, false, &segs, &data, 1448);
    }

    #[test]
    fn rejects_bad_headers() {
        let data = payload(3000);
        let (hdr, frame) = super_frame(Kind::Tcp4, false, &data, 1000);

        let h = VnetHdrRepr { gso_size: 0, ..hdr };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::ZeroGsoSize)
        ));
        assert!(matches!(
            collect(&hdr, &frame, Some(0)),
            Err(GsoError::ZeroSegSizeLimit)
        ));
        let h = VnetHdrRepr {
            gso_type: GsoType::Unknown(3),
            ..hdr
        };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::UfoUnsupported)
        ));
        let h = VnetHdrRepr {
            gso_type: GsoType::Unknown(9),
            ..hdr
        };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::UnknownGsoType(9))
        ));
        let h = VnetHdrRepr {
            gso_type: GsoType::TcpV6,
            ..hdr
        };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::EtherTypeMismatch { .. })
        ));
        let h = VnetHdrRepr {
            gso_type: GsoType::UdpL4,
            ..hdr
        };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::L4ProtocolMismatch { .. })
        ));
        let h = VnetHdrRepr {
            csum_start: hdr.csum_start + 4,
            ..hdr
        };
        assert!(matches!(
            collect(&h, &frame, None),
            Err(GsoError::ChecksumMismatch { .. })
        ));

        let mut f = frame.clone();
        f[14 + 6] = 0x20; // MF
        assert!(matches!(
            collect(&hdr, &f, None),
            Err(GsoError::Ipv4Fragment)
        ));
        let mut f = frame.clone();
        f[14] = 0x44; // IHL 4 words
        assert!(matches!(
            collect(&hdr, &f, None),
            Err(GsoError::BadIpv4HeaderLen(16))
        ));
        let mut f = frame.clone();
        f[14] = 0x65; // version 6 in an IPv4 EtherType
        assert!(matches!(
            collect(&hdr, &f, None),
            Err(GsoError::IpVersionMismatch { .. })
        ));
        let mut f = frame.clone();
        f[14 + 20 + 12] = 0x40; // TCP data offset 16
        assert!(matches!(
            collect(&hdr, &f, None),
            Err(GsoError::BadTcpHeaderLen(16))
        ));
        let mut f = frame.clone();
        f[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes()); // ends inside TCP options
        assert!(matches!(
            collect(&hdr, &f, None),
            Err(GsoError::IpLengthTooShort { .. })
        ));
        let f = &frame[..frame.len() - 1];
        assert!(matches!(
            collect(&hdr, f, None),
            Err(GsoError::Truncated { .. })
        ));
        let f = &frame[..14 + 20 + 10];
        let h = VnetHdrRepr { hdr_len: 0, ..hdr };
        assert!(matches!(
            collect(&h, f, None),
            Err(GsoError::Truncated { .. })
        ));
        assert!(matches!(
            collect(&h, &frame[..10], None),
            Err(GsoError::Ethernet(_))
        ));
    }

    /// A TAP's super-frame may carry an IPv4 total length of 0 (BIG TCP); under a GSO
    /// header the frame is the packet, and the segments come out as from the real length.
    #[test]
    fn an_ipv4_super_frame_with_total_length_zero_segments_like_the_real_one() {
        let data = payload(5000);
        for kind in [Kind::Tcp4, Kind::Udp4] {
            let (hdr, frame) = super_frame(kind, false, &data, 1000);
            let want = collect(&hdr, &frame, None).expect("real length");
            let mut zero = frame.clone();
            zero[14 + 2..14 + 4].fill(0);
            let got = collect(&hdr, &zero, None).expect("length 0 under GSO");
            assert_eq!(got, want);
            verify(kind, false, &got, &data, 1000);
        }
    }

    #[test]
    fn rejects_ipv6_extension_headers() {
        let data = payload(3000);
        let (hdr, mut frame) = super_frame(Kind::Tcp6, false, &data, 1000);
        frame[14 + 6] = 0; // hop-by-hop
        assert!(matches!(
            collect(&hdr, &frame, None),
            Err(GsoError::L4ProtocolMismatch { found: 0, .. })
        ));
    }

    #[test]
    fn emit_error_stops_segmentation() {
        let data = payload(10_000);
        let (hdr, frame) = super_frame(Kind::Tcp4, false, &data, 1000);
        let mut calls = 0;
        let mut scratch = Vec::new();
        let r = segment(&hdr, &frame, None, &mut scratch, &mut |_| {
            calls += 1;
            if calls == 3 {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "full"))
            } else {
                Ok(())
            }
        });
        match r {
            Err(GsoError::Emit(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("expected Emit error, got {other:?}"),
        }
        assert_eq!(calls, 3);
    }

    #[test]
    fn scratch_is_reused_without_growing() {
        let data = payload(30_000);
        let (hdr, frame) = super_frame(Kind::Tcp4, false, &data, 1448);
        let mut scratch = Vec::new();
        let mut count = 0;
        segment(&hdr, &frame, None, &mut scratch, &mut |_| Ok(())).expect("warm up");
        let (ptr, cap) = (scratch.as_ptr(), scratch.capacity());
        for _ in 0..3 {
            count += segment(&hdr, &frame, None, &mut scratch, &mut |_| Ok(())).expect("segments");
        }
        assert_eq!(count, 3 * 30_000usize.div_ceil(1448));
        assert_eq!(scratch.as_ptr(), ptr);
        assert_eq!(scratch.capacity(), cap);
    }

    #[test]
    fn with_vnet_hdr_prefixes_a_zero_header() {
        let data = payload(5000);
        let (hdr, frame) = super_frame(Kind::Udp6, true, &data, 1200);
        let mut segs = Vec::new();
        let mut scratch = Vec::new();
        let n = segment_with_vnet_hdr(&hdr, &frame, None, &mut scratch, &mut |s| {
            let h = VnetHdr::new_checked(s).expect("vnet header");
            assert_eq!(VnetHdrRepr::parse(&h), Ok(VnetHdrRepr::NONE));
            segs.push(s[VNET_HDR_LEN..].to_vec());
            Ok(())
        })
        .expect("segments");
        assert_eq!(n, 5);
        verify(Kind::Udp6, true, &segs, &data, 1200);

        // Non-GSO frames get the header too.
        let plain = VnetHdrRepr::NONE;
        let mut out = Vec::new();
        segment_with_vnet_hdr(&plain, &frame, None, &mut scratch, &mut |s| {
            out = s.to_vec();
            Ok(())
        })
        .expect("one frame");
        assert_eq!(&out[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&out[VNET_HDR_LEN..], &frame[..]);
    }

    #[test]
    fn non_gso_frame_passes_through() {
        let data = payload(100);
        let (_, frame) = super_frame(Kind::Tcp4, false, &data, 1448);
        let segs = collect(&VnetHdrRepr::NONE, &frame, None).expect("one frame");
        assert_eq!(segs, vec![frame]);
    }

    #[test]
    fn non_gso_needs_csum_is_completed() {
        for kind in [Kind::Tcp4, Kind::Tcp6, Kind::Udp4, Kind::Udp6] {
            for len in [0usize, 1, 2, 3, 100, 1001] {
                let data = payload(len);
                let (hdr, frame) = super_frame(kind, kind.v6(), &data, 1448);
                let hdr = VnetHdrRepr {
                    gso_type: GsoType::None,
                    gso_size: 0,
                    ..hdr
                };
                let segs = collect(&hdr, &frame, None).expect("one frame");
                assert_eq!(segs.len(), 1);
                // Same checks as a one-segment GSO output (flags untouched for one segment).
                verify(kind, kind.v6(), &segs, &data, 1448);
            }
        }
    }

    #[test]
    fn complete_checksum_matches_full_checksum() {
        let mut rng = Rng(7);
        for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 1500] {
            let data = payload(len);
            let (hdr, mut frame) = super_frame(Kind::Udp4, false, &data, 1448);
            let start = usize::from(hdr.csum_start);
            let off = usize::from(hdr.csum_offset);
            complete_checksum(&mut frame, start, off).expect("in range");
            let l4_len = (frame.len() - start) as u16;
            let mut ph = Vec::new();
            ph.extend_from_slice(&SRC4);
            ph.extend_from_slice(&DST4);
            ph.extend_from_slice(&[0, 17]);
            ph.extend_from_slice(&l4_len.to_be_bytes());
            assert_eq!(naive_sum(&[&ph, &frame[start..]]), 0xffff);
            let p = PacketHeaders::from_ethernet_slice(&frame).expect("parses");
            if let (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) =
                (p.net, p.transport)
            {
                assert_eq!(
                    u.checksum,
                    u.calc_checksum_ipv4(&ip, p.payload.slice()).expect("sum")
                );
            } else {
                panic!("not UDP/IPv4");
            }
            let _ = rng.next();
        }
    }

    #[test]
    fn complete_checksum_writes_ffff_for_zero() {
        // Sum of the covered bytes is 0xffff, so the checksum is 0 and must become 0xffff.
        let mut frame = [0u8; 8];
        frame[0..2].copy_from_slice(&0xfff0u16.to_be_bytes());
        frame[2..4].copy_from_slice(&0x000fu16.to_be_bytes());
        complete_checksum(&mut frame, 0, 6).expect("in range");
        assert_eq!(&frame[6..8], &[0xff, 0xff]);
    }

    #[test]
    fn complete_checksum_range_errors() {
        let mut frame = [0u8; 20];
        assert!(complete_checksum(&mut frame, 18, 0).is_ok());
        assert!(matches!(
            complete_checksum(&mut frame, 19, 0),
            Err(GsoError::ChecksumOutOfRange { .. })
        ));
        assert!(matches!(
            complete_checksum(&mut frame, 10, 9),
            Err(GsoError::ChecksumOutOfRange { .. })
        ));
        assert!(complete_checksum(&mut frame, usize::MAX, usize::MAX).is_err());
        assert!(complete_checksum(&mut [], 0, 0).is_err());
    }

    #[test]
    fn error_messages_are_readable() {
        let e = GsoError::Truncated {
            what: "TCP header",
            need: 54,
            have: 40,
        };
        assert_eq!(
            e.to_string(),
            "frame truncated: the TCP header ends at byte 54, the frame has 40 bytes"
        );
        assert!(GsoError::UfoUnsupported.to_string().contains("UFO"));
    }

    /// Thousands of mangled frames and random headers: nothing may panic, and whatever is
    /// emitted is never longer than the input plus nothing.
    #[test]
    fn random_inputs_never_panic() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let kinds = [Kind::Tcp4, Kind::Tcp6, Kind::Udp4, Kind::Udp6];
        let mut scratch = Vec::new();
        let mut ok = 0usize;
        for round in 0..6000 {
            let kind = kinds[rng.below(4)];
            let vlan = rng.below(2) == 0;
            let len = rng.below(4000);
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            let (mut hdr, mut frame) = super_frame(kind, vlan, &data, 1 + rng.below(1500) as u16);
            match rng.below(6) {
                0 => {
                    // Entirely random bytes.
                    let n = rng.below(200);
                    frame.truncate(n);
                    rng.fill(&mut frame);
                }
                1 => {
                    let cut = rng.below(frame.len() + 1);
                    frame.truncate(cut);
                }
                2 | 3 => {
                    // Flip a few header bytes.
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(frame.len().min(100));
                        frame[i] = rng.next() as u8;
                    }
                }
                _ => {}
            }
            if rng.below(3) == 0 {
                let mut raw = [0u8; VNET_HDR_LEN];
                rng.fill(&mut raw);
                raw[1] &= if rng.below(2) == 0 { 0x87 } else { 0xff };
                hdr = VnetHdrRepr::from_bytes(&raw).expect("ten bytes");
                if rng.below(2) == 0 {
                    hdr.gso_size = (hdr.gso_size % 2000).max(rng.below(2) as u16);
                }
            }
            let limit = match rng.below(3) {
                0 => None,
                _ => Some(rng.below(3000) as u16),
            };
            let fail_at = rng.below(20);
            let mut calls = 0;
            let frame_len = frame.len();
            let r = if round % 2 == 0 {
                segment(&hdr, &frame, limit, &mut scratch, &mut |s| {
                    calls += 1;
                    assert!(s.len() <= frame_len);
                    if calls == fail_at {
                        Err(io::Error::other("injected"))
                    } else {
                        Ok(())
                    }
                })
            } else {
                segment_with_vnet_hdr(&hdr, &frame, limit, &mut scratch, &mut |s| {
                    calls += 1;
                    assert!(s.len() <= frame_len + VNET_HDR_LEN);
                    Ok(())
                })
            };
            if r.is_ok() {
                ok += 1;
            }
            let start = usize::from(hdr.csum_start);
            let off = usize::from(hdr.csum_offset);
            let _ = complete_checksum(&mut frame, start, off);
        }
        // The generator must still exercise the success path.
        assert!(ok > 500, "only {ok} inputs segmented");
    }
    /// `segment_into` appends each segment after what the buffer holds, and with
    /// `leave_partial` every segment is the full one but for a partial L4 checksum that
    /// completing gives back.
    #[test]
    fn segment_into_appends_and_leaves_partial_checksums_completable() {
        let data = payload(5000);
        for kind in [Kind::Tcp4, Kind::Tcp6, Kind::Udp4, Kind::Udp6] {
            let (hdr, frame) = super_frame(kind, false, &data, 1400);
            let mut full = Vec::new();
            segment(&hdr, &frame, None, &mut Vec::new(), &mut |s| {
                full.push(s.to_vec());
                Ok(())
            })
            .expect("segment");
            let prefix = [0xabu8; 8];
            let mut out = b"kept".to_vec();
            let mut starts = Vec::new();
            let n = segment_into(&hdr, &frame, None, &prefix, true, &mut out, &mut |_, at| {
                starts.push(at);
                Ok(())
            })
            .expect("segment_into");
            assert_eq!(n, full.len());
            assert_eq!(&out[..4], b"kept");
            let l4 = if kind.v6() { 54 } else { 34 };
            let field = if kind.udp() { 6 } else { 16 };
            for (i, want) in full.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(out.len());
                let got = &out[starts[i]..end];
                assert_eq!(&got[..8], &prefix);
                let mut seg = got[8..].to_vec();
                assert_eq!(seg.len(), want.len());
                assert_ne!(seg, *want, "{i}: the checksum is partial");
                complete_checksum(&mut seg, l4, field).expect("complete");
                assert_eq!(seg, *want, "{i}");
            }
        }
    }
}
