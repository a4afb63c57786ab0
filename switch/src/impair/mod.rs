//! Link impairment and faults: netem's delay, jitter, loss, duplication, corruption,
//! reordering, rate and queue limit, and carrier off, per port and direction, changed while
//! the port forwards.
//!
//! - [`config`]: what an impairment is (plain serde data kept in the daemon's state), the
//!   parsers of `20ms`, `1%`, `10mbit`, the checks across fields.
//! - [`model`]: the decision, pure: (packet size, packets, now, seeded generator) -> fate.
//! - [`frame`]: a frame's wire packets and bytes, and corrupting one (pure).
//! - [`link`]: the hooks the driver calls, the held frames and their release task.

pub mod config;
pub mod frame;
pub mod link;
pub mod model;

pub use config::{Direction, Impairment, LinkSpec};
pub use link::{apply, LinkError, LinkState, Way, WayStats};
