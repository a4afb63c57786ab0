//! pasta's way into the background: the process Podman starts forks, the child sets the
//! namespace up and serves it, and the parent exits 0 only once the child says the namespace
//! is ready (or prints the child's error and exits 1). Podman reads the container's addresses
//! and the `--pid` file as soon as the parent exits, and collects the parent's output until
//! every holder of its stdout/stderr has closed them, so the child writes the pid file before
//! it reports ready and then lets go of the inherited stdio.
//!
//! The fork happens before any thread exists (the front runs before the tokio runtime is
//! built), so the child may do anything afterwards.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// How the child tells the parent it is ready: the parent waits on the read end.
#[derive(Debug)]
pub struct Readiness {
    /// None in the foreground (`-f`): nobody waits.
    pipe: Option<std::fs::File>,
}

/// Which side of the fork this is.
pub enum Side {
    /// The parent, with the exit status it must return.
    Parent(i32),
    /// The child (or the only process, in the foreground), which sets up and serves.
    Serve(Readiness),
}

/// The first byte the child writes: the namespace is ready.
const READY: u8 = b'0';
/// The first byte the child writes: it failed; the rest is the message.
const FAILED: u8 = b'1';

/// Forks unless `foreground`; the parent waits for the child's word and returns its status.
pub fn split(foreground: bool) -> io::Result<Side> {
    if foreground {
        return Ok(Side::Serve(Readiness { pipe: None }));
    }
    let (read, write) = nix::unistd::pipe().map_err(io::Error::from)?;
    // SAFETY: called before the tokio runtime (or any other thread) exists, from `main` of
    // a single-threaded process, so the child's copy of the address space holds no lock
    // another thread owned; the child only returns into ordinary Rust code.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write);
            Ok(Side::Parent(wait_for_child(read)))
        }
        nix::unistd::ForkResult::Child => {
            drop(read);
            // Its own session: Podman's (or a shell's) process group and terminal signals
            // no longer reach it once the parent is gone.
            let _ = nix::unistd::setsid();
            Ok(Side::Serve(Readiness {
                pipe: Some(std::fs::File::from(write)),
            }))
        }
    }
}

/// The parent: reads the child's word. EOF without a word means the child died.
fn wait_for_child(read: OwnedFd) -> i32 {
    let mut buf = Vec::new();
    let mut f = std::fs::File::from(read);
    let _ = f.read_to_end(&mut buf);
    match buf.split_first() {
        Some((&READY, _)) => 0,
        Some((&FAILED, msg)) => {
            eprintln!("{}", String::from_utf8_lossy(msg).trim_end());
            1
        }
        _ => {
            eprintln!(
                "netyard pasta: the background process exited before the namespace was ready"
            );
            1
        }
    }
}

impl Readiness {
    /// The namespace is served: writes the pid file, tells the parent, and (in the
    /// background) points stdin, stdout and stderr at /dev/null.
    pub fn ready(mut self, pid_file: Option<&Path>) -> io::Result<()> {
        if let Some(path) = pid_file {
            write_pid_file(path)?;
        }
        if let Some(mut pipe) = self.pipe.take() {
            pipe.write_all(&[READY])?;
            drop(pipe);
            let null = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            nix::unistd::dup2_stdin(&null).map_err(io::Error::from)?;
            nix::unistd::dup2_stdout(&null).map_err(io::Error::from)?;
            nix::unistd::dup2_stderr(&null).map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// Setting up failed: the parent prints `msg` and exits 1 (in the foreground the caller
    /// prints it).
    pub fn fail(mut self, msg: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let mut word = vec![FAILED];
            word.extend_from_slice(msg.as_bytes());
            let _ = pipe.write_all(&word);
        } else {
            eprintln!("{msg}");
        }
    }
}

/// pasta writes its pid, a newline, to the file (created or truncated, 0644).
fn write_pid_file(path: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("PID file {}: {e}", path.display())))?;
    writeln!(f, "{}", std::process::id())
}
