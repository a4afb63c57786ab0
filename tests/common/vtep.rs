//! Two "hosts" joined by a veth underlay, and a Linux kernel VXLAN endpoint on one of them:
//! the set-up every VXLAN interop test starts from (tests/vxlan_e2e.rs, ipv6_vxlan.rs,
//! router_links.rs).

use super::cmd_ok;

/// The underlay: a veth between two host namespaces, `198.18.X.1/24` in `a` and `.2` in `b`.
pub struct Underlay {
    pub a_ip: String,
    pub b_ip: String,
}

/// Joins namespaces `a` and `b` with a veth named after `id` (unique per test).
pub fn underlay(id: &str, a: &str, b: &str) -> Underlay {
    let x = rand::random::<u8>();
    let (ua, ub) = (format!("nyt{id}ua"), format!("nyt{id}ub"));
    cmd_ok(&[
        "ip", "-n", a, "link", "add", &ua, "type", "veth", "peer", "name", &ub, "netns", b,
    ]);
    let u = Underlay {
        a_ip: format!("198.18.{x}.1"),
        b_ip: format!("198.18.{x}.2"),
    };
    for (ns, dev, ip) in [(a, &ua, &u.a_ip), (b, &ub, &u.b_ip)] {
        let cidr = format!("{ip}/24");
        cmd_ok(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev]);
        cmd_ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    u
}

/// Host B's kernel side: `vx0` (VNI `vni`, port 4789, learning, remote A) and a veth to
/// namespace `k` on bridge `br0`; `k`'s `eth0` gets `cidr` (with `addr_flags` such as
/// `nodad`) and MTU 1450.
///
/// B's offloads stay at their defaults (TX checksum, TSO and GSO on): what vx0 sends crosses
/// the veth underlay with the inner TCP/UDP checksum left partial (CHECKSUM_PARTIAL, which a
/// veth never completes), and its TCP super-packets cross unsegmented, reaching A's `UDP_GRO`
/// socket whole with the inner MSS as the segment size. netyard's VXLAN port must hand the
/// first on as NEEDS_CSUM frames and the second as GSO super-frames (issue 16).
pub fn kernel_vtep(hb: &str, u: &Underlay, vni: &str, k: &str, cidr: &str, addr_flags: &[&str]) {
    for args in [
        &[
            "link", "add", "vx0", "type", "vxlan", "id", vni, "dstport", "4789", "local", &u.b_ip,
            "remote", &u.a_ip,
        ][..],
        &["link", "set", "vx0", "mtu", "1450"],
        &["link", "add", "br0", "type", "bridge"],
        &["link", "set", "vx0", "master", "br0"],
        &[
            "link", "add", "vb0", "type", "veth", "peer", "name", "eth0", "netns", k,
        ],
        &["link", "set", "vb0", "mtu", "1450"],
        &["link", "set", "vb0", "master", "br0"],
        &["link", "set", "vx0", "up"],
        &["link", "set", "vb0", "up"],
        &["link", "set", "br0", "up"],
    ] {
        let mut a = vec!["ip", "-n", hb];
        a.extend_from_slice(args);
        cmd_ok(&a);
    }
    cmd_ok(&["ip", "-n", k, "link", "set", "eth0", "mtu", "1450"]);
    let mut add = vec!["ip", "-n", k, "addr", "add", cidr, "dev", "eth0"];
    add.extend_from_slice(addr_flags);
    cmd_ok(&add);
    cmd_ok(&["ip", "-n", k, "link", "set", "eth0", "up"]);
}
