//! Telling a service manager (systemd, `Type=notify`) where the daemon is in its life: ready
//! once its API socket serves and the saved state is re-adopted, reloading while SIGHUP
//! applies `--config` again, stopping on SIGTERM/SIGINT. Without `NOTIFY_SOCKET` (not started
//! by systemd) every call does nothing.

use sd_notify::NotifyState;

/// READY=1 (also after a reload), with a STATUS line `systemctl status` shows.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1, with the monotonic time systemd 253+ asks for (older ones ignore it).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(t) = NotifyState::monotonic_usec_now() {
        states.push(t);
    }
    send(&states);
}

/// STOPPING=1.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    // A failed notification is logged, never fatal: systemd then times the start out itself,
    // which names the unit.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, socket = ?std::env::var_os("NOTIFY_SOCKET"),
            "could not notify the service manager");
    }
}
