//! Interface state with plain ioctls (no netlink), usable in a forked child right after
//! [`open_tap`](super::open_tap).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::cvt;
use super::ifreq::IfReq;

/// `IFF_UP` from linux/if.h, typed as the 16-bit `ifr_flags` it travels in.
const IFF_UP: u16 = 0x1;

/// Sets `IFF_UP` on interface `name` in the calling thread's network namespace (a no-op if it
/// is already up). Plain syscalls only, no allocation.
pub fn set_link_up(name: &str) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut req = IfReq::new(name)?;
    get_flags(sock.as_fd(), &mut req)?;
    let flags = req.flags();
    if flags & IFF_UP == 0 {
        let mut req = IfReq::new(name)?.with_flags(flags | IFF_UP);
        set_flags(sock.as_fd(), &mut req)?;
    }
    Ok(())
}

/// A socket to issue interface ioctls on.
fn ioctl_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// SIOCGIFFLAGS.
fn get_flags(sock: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `sock` is a valid socket and `req` points to a live, initialised `ifreq` that
    // SIOCGIFFLAGS reads and writes within its size; the return value is checked.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, req.as_mut_ptr()) })?;
    Ok(())
}

/// SIOCSIFFLAGS.
fn set_flags(sock: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `sock` is a valid socket and `req` points to a live, initialised `ifreq` that
    // SIOCSIFFLAGS reads within its size; the return value is checked.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, req.as_mut_ptr()) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::in_new_netns;

    #[test]
    fn brings_a_link_up() {
        in_new_netns(|| {
            // A fresh namespace's loopback starts down.
            let flags = || {
                let sock = ioctl_socket().unwrap();
                let mut req = IfReq::new("lo").unwrap();
                get_flags(sock.as_fd(), &mut req).unwrap();
                req.flags()
            };
            assert_eq!(libc::c_int::from(IFF_UP), libc::IFF_UP);
            assert_eq!(flags() & IFF_UP, 0);
            set_link_up("lo").unwrap();
            assert_ne!(flags() & IFF_UP, 0);
            set_link_up("lo").unwrap();
            let err = set_link_up("nynone0").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        });
    }
}
