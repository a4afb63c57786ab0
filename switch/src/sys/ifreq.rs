//! A small builder around `struct ifreq`, so the union is only touched here.
//!
//! Allocation-free: [`crate::sys::open_tap_raw`] uses it in a forked child.

use std::io;

/// An `ifreq` carrying an interface name and, for flag ioctls, `ifr_flags`.
pub(crate) struct IfReq(libc::ifreq);

impl IfReq {
    /// An all-zero request naming `name`. Fails with `ENAMETOOLONG` if the name does not fit
    /// `IFNAMSIZ` with its terminating NUL, and `EINVAL` if it contains a NUL byte. An empty name
    /// asks TUNSETIFF to pick one.
    pub(crate) fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        if bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `ifreq` is plain old data (integer arrays and a union of integers, sockaddrs
        // and a raw pointer); the all-zero bit pattern is a valid value of every field.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = libc::c_char::from_ne_bytes([src]);
        }
        Ok(IfReq(req))
    }

    /// Sets `ifr_flags` (the kernel's `short`, taken as its 16 bits).
    pub(crate) fn with_flags(mut self, flags: u16) -> IfReq {
        self.0.ifr_ifru.ifru_flags = libc::c_short::from_ne_bytes(flags.to_ne_bytes());
        self
    }

    /// Reads `ifr_flags` (after a `*GETIFF`/`SIOCGIFFLAGS` filled it).
    pub(crate) fn flags(&self) -> u16 {
        // SAFETY: the request was zero-initialised and only ever written through `ifru_flags`
        // or by the kernel; every bit pattern is a valid `c_short`.
        let flags = unsafe { self.0.ifr_ifru.ifru_flags };
        u16::from_ne_bytes(flags.to_ne_bytes())
    }

    /// The raw name array (NUL-padded).
    pub(crate) fn name_raw(&self) -> [libc::c_char; libc::IFNAMSIZ] {
        self.0.ifr_name
    }

    /// Pointer for an ioctl that reads and/or writes the request.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::ifreq {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_round_trips() {
        let req = IfReq::new("nytest0").unwrap();
        let raw = req.name_raw();
        let want = b"nytest0\0\0\0\0\0\0\0\0\0";
        assert!(raw.iter().zip(want).all(|(&c, &w)| c.to_ne_bytes() == [w]));
        assert_eq!(req.flags(), 0);
        assert_eq!(req.with_flags(0x1002).flags(), 0x1002);
    }

    #[test]
    fn rejects_bad_names() {
        let long = "a".repeat(libc::IFNAMSIZ);
        assert_eq!(
            IfReq::new(&long).err().and_then(|e| e.raw_os_error()),
            Some(libc::ENAMETOOLONG)
        );
        assert!(IfReq::new(&long[1..]).is_ok());
        assert_eq!(
            IfReq::new("a\0b").err().and_then(|e| e.raw_os_error()),
            Some(libc::EINVAL)
        );
        assert_eq!(IfReq::new("").unwrap().name_raw(), [0; libc::IFNAMSIZ]);
    }
}
