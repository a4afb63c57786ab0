//! Where the engines' frames go: the [`FrameSink`] seam (the gateway's uplink in the daemon,
//! a recording sink in tests).

/// Sends a frame to the switch; false if it could not be queued.
pub(crate) trait FrameSink {
    fn send_frame(&self, frame: &[u8]) -> bool;
}

/// The gateway's port takes a virtio-net header before each frame: frames built without
/// one go out behind an all-zero header (no offload asked).
pub(crate) struct VnetSink<'a>(pub &'a crate::uplink::Uplink);

impl FrameSink for VnetSink<'_> {
    fn send_frame(&self, frame: &[u8]) -> bool {
        self.0.send_plain(frame)
    }
}
