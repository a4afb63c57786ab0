//! Recognising a container's network namespace again after a daemon restart.
//!
//! At attach the daemon records the netns path it was given (`/run/netns/X`, a bind mount, or
//! `/proc/PID/ns/net`) and an [`NsIdentity`] from [`identify`]: the namespace file's device and
//! inode (nsfs numbers: equal for two files of the same namespace) and, when the container was
//! given by pid, that process's start time. After a restart, [`check`] tells whether the path
//! still leads to that same namespace ([`NsStatus::Same`]), to nothing ([`NsStatus::Gone`]),
//! or to another namespace or process ([`NsStatus::Replaced`]): a recycled pid, or a name
//! reused for a new namespace, is never taken for the old container.
//!
//! Contracts and limits:
//! - A pid alone is not an identity (pids are recycled), nor is a path; the start time of
//!   `/proc/PID/stat` (field 22, clock ticks since boot) tells two processes of one pid apart.
//! - An nsfs inode number is unique among *living* namespaces only; the kernel may give it to
//!   a new namespace once the old one is freed. While the daemon holds a descriptor in the
//!   namespace (its TAP fd) that cannot happen, and the recorded start time covers `/proc`
//!   paths. What remains is a bind-mounted name that was deleted and re-made while the daemon
//!   was down whose new namespace drew the old number; runtimes name their namespaces uniquely
//!   (`cni-<uuid>`, a sandbox id), which makes that unlikely, not impossible.
//! - The daemon's TAP fd keeps a namespace alive after `ip netns del`: only the path
//!   disappearing shows it, which is intended ([`NsStatus::Gone`] for a namespace nobody can
//!   name any more).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::open::{open_ns_file, NsKind};
use super::{sys, NetnsError, NsTarget};

/// What identifies a network namespace, and the process it was reached through, across a
/// daemon restart (serialised into the daemon's state).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NsIdentity {
    /// Device of the namespace file (fstat: the nsfs device).
    pub dev: u64,
    /// Inode of the namespace file (the namespace's nsfs inode number).
    pub ino: u64,
    /// The process the namespace was reached through, if it was given by pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// That process's start time: `/proc/PID/stat` field 22 (`starttime`, clock ticks since
    /// boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
}

/// What [`check`] found at a recorded path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsStatus {
    /// The path leads to the recorded namespace (and the recorded process is still there).
    Same,
    /// Nothing is there: the path (or the recorded process) is gone, or what is there is not
    /// a network namespace.
    Gone,
    /// Another namespace is there, or the recorded pid now belongs to another process.
    Replaced,
}

/// Identifies `target`'s network namespace, and process `pid` (the process `target` was made
/// from, [`NsTarget::from_pid`]) when given. Call it when attaching, next to
/// [`open_in_ns`](super::open_in_ns), and record it with `target.netns()`.
///
/// With a pid, its start time is read before and after the namespace file is examined: if it
/// changed, or the process disappeared meanwhile, the namespace seen may have been another
/// process's and the call fails with [`NetnsError::ProcessChanged`].
pub fn identify(target: &NsTarget, pid: Option<u32>) -> Result<NsIdentity, NetnsError> {
    let pid_start = pid
        .map(|pid| start_time(pid).map_err(|source| NetnsError::ProcStat { pid, source }))
        .transpose()?;
    let path = target.netns();
    let file = File::from(open_ns_file(path, NsKind::Net)?);
    let meta = file
        .metadata()
        .map_err(|source| NetnsError::OpenNamespace {
            path: path.to_owned(),
            source,
        })?;
    if let (Some(pid), Some(before)) = (pid, pid_start) {
        if start_time(pid).ok() != Some(before) {
            return Err(NetnsError::ProcessChanged { pid });
        }
    }
    Ok(NsIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        pid,
        pid_start,
    })
}

/// Whether `path`, the netns path recorded at attach (`/run/netns/X`, a bind mount, or
/// `/proc/PID/ns/net`), still leads to the namespace `id` identifies.
///
/// [`NsStatus::Gone`] when the path is missing, unreadable or not a network namespace, or the
/// recorded process (`id.pid`) is gone; [`NsStatus::Replaced`] when the namespace there has
/// another device/inode, or the pid's start time differs from `id.pid_start`; otherwise
/// [`NsStatus::Same`]. Errors other than "not found" count as gone (the namespace cannot be
/// confirmed, so it must not be taken for the old one) and are logged at debug level.
pub fn check(path: &Path, id: &NsIdentity) -> NsStatus {
    if let Some(pid) = id.pid {
        let status = process_status(pid, id.pid_start);
        if status != NsStatus::Same {
            return status;
        }
    }
    let status = match ns_at(path) {
        None => NsStatus::Gone,
        Some(found) if found == (id.dev, id.ino) => NsStatus::Same,
        Some(_) => NsStatus::Replaced,
    };
    match (status, id.pid) {
        // The process may have exited after the first look and its pid been reused; a
        // `/proc/PID` path would then have shown the new process's namespace. Look again.
        (NsStatus::Same, Some(pid)) => process_status(pid, id.pid_start),
        _ => status,
    }
}

/// Whether process `pid` is there and, when `start` is known, the same process.
fn process_status(pid: u32, start: Option<u64>) -> NsStatus {
    match start_time(pid) {
        Ok(now) if start.is_some_and(|s| s != now) => NsStatus::Replaced,
        Ok(_) => NsStatus::Same,
        Err(e) => {
            if !is_not_found(&e) {
                tracing::debug!(pid, error = %e, "process start time unreadable: taken as gone");
            }
            NsStatus::Gone
        }
    }
}

/// (device, inode) of the network namespace at `path`, or `None` if there is none.
fn ns_at(path: &Path) -> Option<(u64, u64)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            if !is_not_found(&e) {
                tracing::debug!(path = %path.display(), error = %e,
                    "namespace file unreadable: taken as gone");
            }
            return None;
        }
    };
    // A leftover mount point (an empty file) after `ip netns del`, or anything else that is
    // not a network namespace, is no namespace at all.
    match sys::ns_type(file.as_fd()) {
        Ok(libc::CLONE_NEWNET) => {}
        _ => return None,
    }
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// ENOENT, or ESRCH for a `/proc/PID` entry whose process is exiting.
fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `starttime` of process `pid`, from `/proc/PID/stat`.
pub fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time (field 22)"),
        )
    })
}

/// Field 22 of a `/proc/PID/stat` line. Field 2, `(comm)`, may hold spaces and parentheses
/// (and need not be UTF-8), so the fields are counted from the last `)`.
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // After the `)` come fields 3 (state), 4 (ppid), ...: field 22 is the 20th.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// A pidfd of the process an endpoint was attached by (`--pid`), readable once it exits:
/// `None` for an endpoint given by path. Fails with [`NetnsError::ProcessChanged`] when
/// the pid already belongs to another process (the recorded one exited and the pid was
/// reused), which the caller treats as an exit.
pub fn exit_watch(id: &NsIdentity) -> Result<Option<std::os::fd::OwnedFd>, NetnsError> {
    let Some(pid) = id.pid else {
        return Ok(None);
    };
    let fd = super::sys::pidfd_open(pid).map_err(|source| NetnsError::ProcStat { pid, source })?;
    // The pidfd names whatever process has the pid now: check it is still the recorded one.
    match start_time(pid) {
        Ok(t) if Some(t) == id.pid_start => Ok(Some(fd)),
        _ => Err(NetnsError::ProcessChanged { pid }),
    }
}

/// Waits until the process behind a pidfd from [`exit_watch`] exits (the pidfd turns
/// readable then, once and for good).
pub async fn wait_exit(pidfd: std::os::fd::OwnedFd) -> io::Result<()> {
    let afd = super::sys::async_readable(pidfd)?;
    let _ready = afd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of process `pid` named `comm`, with field N holding N (starttime: 22),
    /// except state.
    fn stat_line(pid: u32, comm: &[u8]) -> Vec<u8> {
        let mut line = format!("{pid} (").into_bytes();
        line.extend_from_slice(comm);
        line.extend_from_slice(b") S");
        for field in 4..=52 {
            line.extend_from_slice(format!(" {field}").as_bytes());
        }
        line.push(b'\n');
        line
    }

    #[test]
    fn start_time_is_field_22_whatever_the_name() {
        for comm in [
            &b"sleep"[..],
            b"a b c",
            b"x) 1 2 3 (y",
            b")))",
            b"",
            b"\xff\xfe not utf-8",
        ] {
            assert_eq!(
                parse_start_time(&stat_line(42, comm)),
                Some(22),
                "{:?}",
                String::from_utf8_lossy(comm)
            );
        }
        assert_eq!(parse_start_time(b""), None);
        assert_eq!(parse_start_time(b"42 (sleep"), None);
        assert_eq!(parse_start_time(b"42 (sleep) S 1 2 3"), None);
        let mut bad = stat_line(42, b"sleep");
        let at = bad.windows(4).position(|w| w == b" 22 ").expect("field 22") + 1;
        bad[at] = b'x';
        assert_eq!(parse_start_time(&bad), None);
    }

    #[test]
    fn own_process_is_the_same() {
        let pid = std::process::id();
        let start = start_time(pid).expect("own start time");
        assert_eq!(process_status(pid, Some(start)), NsStatus::Same);
        assert_eq!(process_status(pid, None), NsStatus::Same);
        assert_eq!(process_status(pid, Some(start + 1)), NsStatus::Replaced);
    }

    #[test]
    fn serialises_without_absent_pid() {
        let id = NsIdentity {
            dev: 4,
            ino: 4026531840,
            pid: None,
            pid_start: None,
        };
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, r#"{"dev":4,"ino":4026531840}"#);
        assert_eq!(
            serde_json::from_str::<NsIdentity>(&json).expect("parse"),
            id
        );
        let id = NsIdentity {
            pid: Some(7),
            pid_start: Some(123),
            ..id
        };
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(
            json,
            r#"{"dev":4,"ino":4026531840,"pid":7,"pid_start":123}"#
        );
        assert_eq!(
            serde_json::from_str::<NsIdentity>(&json).expect("parse"),
            id
        );
    }
}
