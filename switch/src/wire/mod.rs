//! Typed views over frame bytes, in smoltcp's style.
//!
//! Contract: after `new_checked` succeeds no accessor panics. `new_unchecked` is for emitting
//! into a buffer the caller sized.

pub mod checksum;
pub mod ethernet;
pub mod vnet;
pub mod vxlan;

/// Why a buffer could not be viewed as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header it should hold.
    #[error("buffer too short for {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which header was being read.
        what: &'static str,
        /// Bytes the header needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
}
