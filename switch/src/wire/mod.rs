//! Typed views over frame bytes, in smoltcp's style.
//!
//! Contract: after `new_checked` succeeds no accessor panics. `new_unchecked` is for emitting
//! into a buffer the caller sized.

pub mod ethernet;
pub mod vnet;
