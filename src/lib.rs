//! netyard daemon library: owns state, the control API and the wiring of the data plane crates.

pub mod netns;
