//! IPv6 for the "outside" namespace of the egress tests (tests/ipv6_egress.rs): the same link
//! as [`super::Outside`], with addresses of the documentation range 2001:db8::/32 beside the
//! IPv4 ones. The connected /64 is the host namespace's only IPv6 route besides loopback, so a
//! test sends nowhere else; 2001:db8:dead::/48 has no route at all.

use super::{cmd_ok, Lab, Outside};

/// [`Outside`] with IPv6.
#[derive(Debug, Clone)]
pub struct Outside6 {
    pub v4: Outside,
    /// The outside namespace's IPv6 address.
    pub ip: String,
    /// The host namespace's IPv6 address on the link.
    pub host_ip: String,
}

impl Lab {
    /// Makes the "outside" namespace with IPv4 and IPv6 (2001:db8:X::2/64 outside,
    /// 2001:db8:X::1/64 on the host's side; no duplicate address detection, so both are usable
    /// at once).
    pub fn outside6(&self) -> Outside6 {
        let v4 = self.outside();
        let x = rand::random::<u16>() | 1;
        let o = Outside6 {
            ip: format!("2001:db8:{x:x}::2"),
            host_ip: format!("2001:db8:{x:x}::1"),
            v4,
        };
        let host = self.host.name.as_str();
        let add = |ns: &str, ip: &str, dev: &str| {
            // A namespace may start with IPv6 off (the machine's default for new ones).
            for key in ["all", "default", dev] {
                let kv = format!("net.ipv6.conf.{key}.disable_ipv6=0");
                cmd_ok(&["ip", "netns", "exec", ns, "sysctl", "-qw", &kv]);
            }
            cmd_ok(&[
                "ip",
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{ip}/64"),
                "dev",
                dev,
                "nodad",
            ]);
        };
        add(host, &o.host_ip, "nyhout");
        add(&o.v4.ns, &o.ip, "nyoin");
        cmd_ok(&["ip", "-n", host, "link", "set", "lo", "up"]);
        cmd_ok(&["ip", "-n", &o.v4.ns, "link", "set", "lo", "up"]);
        o
    }
}
