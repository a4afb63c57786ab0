//! What the impairment needs to know of a frame's bytes, and corrupting one. Pure.

use crate::gso;
use crate::port::VNET_HDR_LEN;
use crate::wire::vnet::{GsoType, VnetHdrRepr};

const ETH_HLEN: usize = 14;

/// A frame as the wire would carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Wire packets: 1, or a GSO super-frame's segments.
    pub packets: u32,
    /// Ethernet bytes on the wire, every segment's headers counted.
    pub wire_bytes: u64,
}

/// The shape of a switch frame (virtio-net header, then Ethernet). A GSO super-frame's
/// headers end after its L4 header (found at `csum_start`, which the bridge checked is in the
/// frame); each segment repeats them. Anything unreadable counts as one packet of its length.
pub fn shape(frame: &[u8]) -> Shape {
    let eth_len = frame.len().saturating_sub(VNET_HDR_LEN);
    let one = Shape {
        packets: 1,
        wire_bytes: eth_len as u64,
    };
    let Ok(hdr) = VnetHdrRepr::from_bytes(frame) else {
        return one;
    };
    let l4 = usize::from(hdr.csum_start);
    let l4_len = match hdr.gso_type {
        GsoType::TcpV4 | GsoType::TcpV6 => frame
            .get(VNET_HDR_LEN + l4 + 12)
            .map(|b| usize::from(b >> 4) * 4),
        GsoType::UdpL4 => Some(8),
        GsoType::None | GsoType::Unknown(_) => None,
    };
    let (Some(l4_len), true) = (l4_len, hdr.gso_size > 0) else {
        return one;
    };
    let headers = l4 + l4_len;
    let payload = eth_len.saturating_sub(headers);
    let packets = payload.div_ceil(usize::from(hdr.gso_size)).max(1);
    Shape {
        packets: u32::try_from(packets).unwrap_or(u32::MAX),
        wire_bytes: (payload + packets * headers) as u64,
    }
}

/// Is the frame a GSO frame (one the wire would carry as several packets, or one packet in
/// offload form)?
pub fn is_gso(frame: &[u8]) -> bool {
    frame.get(1).is_some_and(|t| *t & 0x7f != 0)
}

/// Flips one bit of `frame` (a switch frame, not GSO), chosen by `r`, after the Ethernet
/// header (a flipped MAC address would be a loss, not a corruption). A partial checksum is
/// completed first, else the receiver's offload would compute it over the flipped bit and
/// the packet would arrive valid; the header's NEEDS_CSUM and DATA_VALID flags are cleared for
/// the same reason (DATA_VALID tells the receiver not to look). Returns false (nothing done)
/// for a GSO frame or one without a byte after the Ethernet header.
pub fn corrupt(frame: &mut [u8], r: u64) -> bool {
    let Ok(hdr) = VnetHdrRepr::from_bytes(frame) else {
        return false;
    };
    if hdr.gso_type != GsoType::None || frame.len() <= VNET_HDR_LEN + ETH_HLEN {
        return false;
    }
    if hdr.needs_csum {
        let eth = &mut frame[VNET_HDR_LEN..];
        if gso::complete_checksum(
            eth,
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        )
        .is_err()
        {
            return false;
        }
    }
    frame[..VNET_HDR_LEN].copy_from_slice(&VnetHdrRepr::NONE.to_bytes());
    let body = &mut frame[VNET_HDR_LEN + ETH_HLEN..];
    let at = (r as u32 as usize) % body.len();
    body[at] ^= 1 << ((r >> 32) % 8);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    /// An IPv4/UDP frame to 10.0.0.2 with `payload`, behind `hdr`.
    fn udp_frame(hdr: VnetHdrRepr, payload: &[u8], partial: bool) -> Vec<u8> {
        let mut f = hdr.to_bytes().to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let ulen = (8 + payload.len()) as u16;
        let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
        udp[4..6].copy_from_slice(&ulen.to_be_bytes());
        udp.extend_from_slice(payload);
        let pseudo =
            checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, u32::from(ulen));
        if partial {
            // What a sender with checksum offload hands over: the pseudo-header sum only.
            let p = checksum::fold(pseudo);
            udp[6..8].copy_from_slice(&p.to_be_bytes());
        } else {
            let full = !checksum::fold(checksum::add(pseudo, &udp));
            udp[6..8].copy_from_slice(&full.to_be_bytes());
        }
        f.extend_from_slice(&udp);
        f
    }

    fn udp_valid(f: &[u8]) -> bool {
        let eth = &f[VNET_HDR_LEN..];
        let udp = &eth[34..];
        let pseudo =
            checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, udp.len() as u32);
        checksum::fold(checksum::add(pseudo, udp)) == 0xffff
    }

    #[test]
    fn a_plain_frame_is_one_packet_of_its_length() {
        let f = udp_frame(VnetHdrRepr::NONE, &[1; 100], false);
        assert_eq!(
            shape(&f),
            Shape {
                packets: 1,
                wire_bytes: (f.len() - VNET_HDR_LEN) as u64
            }
        );
    }

    #[test]
    fn a_super_frame_counts_its_segments_with_their_headers() {
        let hdr = VnetHdrRepr {
            needs_csum: true,
            gso_type: GsoType::UdpL4,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdrRepr::NONE
        };
        let f = udp_frame(hdr, &[7; 2500], true);
        // 3 segments (1000, 1000, 500), each with 42 bytes of headers.
        assert_eq!(
            shape(&f),
            Shape {
                packets: 3,
                wire_bytes: 2500 + 3 * 42
            }
        );
    }

    #[test]
    fn corruption_flips_one_bit_and_the_checksum_no_longer_holds() {
        let mut f = udp_frame(VnetHdrRepr::NONE, &[9; 64], false);
        assert!(udp_valid(&f));
        let before = f.clone();
        for r in [0u64, 5, 1 << 35 | 77, u64::MAX] {
            let mut g = before.clone();
            assert!(corrupt(&mut g, r));
            let diff: u32 = g
                .iter()
                .zip(&before)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1);
            assert_eq!(
                g[..VNET_HDR_LEN + ETH_HLEN],
                before[..VNET_HDR_LEN + ETH_HLEN]
            );
        }
        assert!(corrupt(&mut f, 60)); // a payload byte
        assert!(!udp_valid(&f));
    }

    #[test]
    fn a_partial_checksum_is_completed_before_the_flip() {
        let hdr = VnetHdrRepr {
            needs_csum: true,
            data_valid: true,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdrRepr::NONE
        };
        let mut f = udp_frame(hdr, &[3; 64], true);
        assert!(!udp_valid(&f), "partial: only the pseudo-header sum");
        // Flip a bit of the IPv4 header's TTL (byte 8 after Ethernet): the UDP part stays
        // whole, so its completed checksum must hold and the header must ask nothing more.
        assert!(corrupt(&mut f, 8));
        assert!(udp_valid(&f));
        assert_eq!(&f[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
    }

    #[test]
    fn a_gso_frame_is_never_corrupted_whole() {
        let hdr = VnetHdrRepr {
            needs_csum: true,
            gso_type: GsoType::UdpL4,
            gso_size: 100,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdrRepr::NONE
        };
        let mut f = udp_frame(hdr, &[1; 300], true);
        assert!(is_gso(&f));
        assert!(!corrupt(&mut f, 1));
    }
}
