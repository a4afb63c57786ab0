//! Incremental checksum updates (RFC 1624): a router changes a few 16-bit words of a header
//! (TTL, an address, a port) and fixes the checksum from the old and new words instead of
//! summing the whole packet again.

/// The Internet checksum `check` (complemented, as on the wire) after the bytes `old`
/// became `new` (even lengths, at an even offset of the summed data): HC' = ~(~HC + ~m + m').
pub fn replace(check: u16, old: &[u8], new: &[u8]) -> u16 {
    !replace_sum(!check, old, new)
}

/// The same for a field holding a partial sum that is not complemented (a checksum the
/// device completes: virtio-net's NEEDS_CSUM puts the pseudo-header's sum there).
pub fn replace_sum(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u32::from(sum);
    for w in old.chunks(2) {
        acc += u32::from(!word(w));
    }
    for w in new.chunks(2) {
        acc += u32::from(word(w));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn word(w: &[u8]) -> u16 {
    match *w {
        [a, b] => u16::from_be_bytes([a, b]),
        [a] => u16::from_be_bytes([a, 0]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netyard_switch::wire::checksum::checksum;

    #[test]
    fn an_incremental_update_equals_summing_again() {
        let mut data: Vec<u8> = (0u8..64)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        data[10] = 0;
        data[11] = 0;
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0);
        for (off, new) in [
            (8usize, [0x3fu8, 0x06]),
            (12, [10, 9]),
            (20, [0xff, 0xff]),
            (2, [0, 0]),
        ] {
            let old = [data[off], data[off + 1]];
            data[off..off + 2].copy_from_slice(&new);
            let fixed = replace(u16::from_be_bytes([data[10], data[11]]), &old, &new);
            data[10..12].copy_from_slice(&fixed.to_be_bytes());
            assert_eq!(checksum(&data), 0, "after changing offset {off}");
        }
    }
}
