//! The switch end to end in-process: real drivers over in-memory socketpair ports, so frames
//! the kernel would refuse to send (runts) can be injected, and the whole port state is checked
//! after each step.

use std::sync::Arc;
use std::time::Duration;

use netyard_switch::sys::{MemPeer, MemPort};
use netyard_switch::wire::checksum;
use netyard_switch::{driver, PortCaps, Switch, SwitchConfig, SwitchPort};

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];

const OFFLOAD: PortCaps = PortCaps {
    vnet_hdr: true,
    gso_tcp: true,
    gso_udp: true,
};

fn eth(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.resize(14 + payload, 0x5a);
    f
}

fn with_hdr(frame: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 10];
    v.extend_from_slice(frame);
    v
}

struct Rig {
    sw: Arc<Switch>,
    ports: Vec<Arc<SwitchPort>>,
    peers: Vec<MemPeer>,
}

fn rig(caps: &[PortCaps]) -> Rig {
    let sw = Switch::new("t", SwitchConfig::default());
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for (i, c) in caps.iter().enumerate() {
        let (p, mut peer) = MemPort::pair(*c).expect("socketpair");
        peer.set_timeout(Duration::from_millis(500));
        let sp = sw.add_port(format!("p{i}"), Box::new(p));
        driver::spawn_port(sw.clone(), sp.clone()).expect("driver");
        ports.push(sp);
        peers.push(peer);
    }
    Rig { sw, ports, peers }
}

fn recv(peer: &MemPeer) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    let n = peer.recv_raw(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The port's counters once `done` holds of them (or after 2 s, for the assertion to show).
async fn settled(
    port: &SwitchPort,
    done: impl Fn(&netyard_switch::PortStats) -> bool,
) -> netyard_switch::PortStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let c = port.counters.snapshot();
        if done(&c) || tokio::time::Instant::now() >= deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_learns_forwards_and_counts_drops() {
    let Rig { sw, ports, peers } = rig(&[OFFLOAD, OFFLOAD, PortCaps::PLAIN]);
    let peers = Arc::new(peers);

    // Broadcast from A floods to the two others, never back to A.
    let p = peers.clone();
    let got = blocking(move || {
        p[0].send_raw(&with_hdr(&eth(BCAST, A, 46))).unwrap();
        (
            recv(&p[1]),
            recv(&p[2]),
            p[0].try_recv_raw(&mut [0u8; 100]).is_ok(),
        )
    })
    .await;
    assert_eq!(got.0.as_deref(), Some(&with_hdr(&eth(BCAST, A, 46))[..]));
    assert_eq!(
        got.1.as_deref(),
        Some(&eth(BCAST, A, 46)[..]),
        "plain port gets no header"
    );
    assert!(!got.2, "a frame never returns to its ingress port");

    // B answers A: unicast to A only, B is learned.
    let p = peers.clone();
    let got = blocking(move || {
        p[1].send_raw(&with_hdr(&eth(A, B, 46))).unwrap();
        (recv(&p[0]), p[2].try_recv_raw(&mut [0u8; 100]).is_ok())
    })
    .await;
    assert!(got.0.is_some());
    assert!(!got.1, "known unicast is not flooded");

    // Malformed frames from C (plain port): runt, multicast source, over-MTU. Then a good one.
    let p = peers.clone();
    let good = blocking(move || {
        p[2].send_raw(&[1, 2, 3]).unwrap();
        p[2].send_raw(&eth(A, [1, 0, 0, 0, 0, 1], 46)).unwrap();
        p[2].send_raw(&eth(A, C, 1501)).unwrap();
        p[2].send_raw(&eth(A, C, 1500)).unwrap();
        recv(&p[0])
    })
    .await;
    assert_eq!(
        good.map(|f| f.len()),
        Some(10 + 14 + 1500),
        "traffic keeps flowing"
    );

    let c = ports[2].counters.snapshot();
    assert_eq!(c.drops.get("runt"), Some(&1));
    assert_eq!(c.drops.get("multicast_source"), Some(&1));
    assert_eq!(c.drops.get("over_mtu"), Some(&1));
    assert_eq!(c.drops_total, 3);
    assert_eq!(c.rx_packets, 4);
    // A's transmit count is bumped just after its write, which the peer may see first.
    let a = settled(&ports[0], |a| a.tx_packets >= 2).await;
    assert_eq!((a.rx_packets, a.tx_packets, a.drops_total), (1, 2, 0));
    let macs: Vec<String> = sw
        .fdb
        .entries(sw.now_ms())
        .iter()
        .map(|e| e.mac.to_string())
        .collect();
    assert_eq!(
        macs,
        [
            "02:00:00:00:00:0a",
            "02:00:00:00:00:0b",
            "02:00:00:00:00:0c"
        ]
    );
}

/// A TCPv4 GSO super-frame with a partial checksum, as a TAP with TSO hands it over.
fn tcp_super_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8], mss: u16) -> Vec<u8> {
    let ip_len = 20 + 20 + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&7u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH|ACK
    tcp[14..16].copy_from_slice(&64000u16.to_be_bytes());
    let pseudo = checksum::pseudo_header_v4(
        &[10, 0, 0, 1],
        &[10, 0, 0, 2],
        6,
        (20 + payload.len()) as u32,
    );
    // Partial checksum: the folded pseudo-header sum, not complemented.
    tcp[16..18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    let mut hdr = [0u8; 10];
    hdr[0] = 1; // NEEDS_CSUM
    hdr[1] = 1; // TCPV4
    hdr[2..4].copy_from_slice(&54u16.to_ne_bytes());
    hdr[4..6].copy_from_slice(&mss.to_ne_bytes());
    hdr[6..8].copy_from_slice(&34u16.to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
    let mut out = hdr.to_vec();
    out.extend_from_slice(&f);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gso_crosses_whole_to_offload_ports_and_is_segmented_for_plain_ones() {
    let Rig { ports, peers, .. } = rig(&[OFFLOAD, OFFLOAD, PortCaps::PLAIN]);
    let peers = Arc::new(peers);
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let sf = tcp_super_frame(BCAST, A, &payload, 1448);
    let p = peers.clone();
    let sf2 = sf.clone();
    let (whole, segs) = blocking(move || {
        p[0].send_raw(&sf2).unwrap();
        let whole = recv(&p[1]);
        let mut segs = Vec::new();
        while let Some(s) = recv(&p[2]) {
            segs.push(s);
        }
        (whole, segs)
    })
    .await;
    assert_eq!(
        whole.as_deref(),
        Some(&sf[..]),
        "offload port gets the super-frame whole"
    );
    assert_eq!(segs.len(), 60_000usize.div_ceil(1448));
    let mut joined = Vec::new();
    for s in &segs {
        assert!(s.len() <= 14 + 1500, "segment within MTU");
        let ip = &s[14..34];
        assert_eq!(checksum::checksum(ip), 0, "IPv4 header checksum valid");
        let l4 = &s[34..];
        let pseudo = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, l4.len() as u32);
        assert_eq!(
            checksum::fold(checksum::add(pseudo, l4)),
            0xffff,
            "TCP checksum valid"
        );
        joined.extend_from_slice(&l4[20..]);
    }
    assert_eq!(joined, payload);
    let c = settled(&ports[2], |c| c.tx_packets >= segs.len() as u64).await;
    assert_eq!(c.tx_segmented, 1);
    assert_eq!(c.tx_packets, segs.len() as u64);
    assert_eq!(ports[0].counters.snapshot().rx_gso, 1);
}

/// An IPv4/UDP frame from (`src` MAC, `ip`) to `dst`.
fn ipv4_eth(dst: [u8; 6], src: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut l3 = [0u8; 28];
    l3[0] = 0x45;
    l3[9] = 17;
    l3[12..16].copy_from_slice(&ip);
    l3[16..20].copy_from_slice(&[10, 0, 0, 1]);
    f.extend_from_slice(&l3);
    f.resize(60, 0);
    f
}

/// An ARP reply from `sha`/`spa` (Ethernet source `sha` too) to `dst`.
fn arp_reply(dst: [u8; 6], sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[10, 0, 0, 10]);
    f.resize(60, 0);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_frame_from_a_secured_port_never_reaches_another_and_trusting_it_lets_it_through()
{
    let Rig { sw, ports, peers } = rig(&[PortCaps::PLAIN, PortCaps::PLAIN, PortCaps::PLAIN]);
    const C_IP: [u8; 4] = [10, 0, 0, 12];
    const B_IP: [u8; 4] = [10, 0, 0, 11];
    // p2 is C's port; C may only be C.
    ports[2].set_security(Some(netyard_switch::PortSecurity {
        mac: netyard_switch::MacAddr(C),
        ipv4: vec![C_IP.into()],
        ipv6: Vec::new(),
    }));
    let peers = Arc::new(peers);

    // A (p0) and B (p1) say hello: learned on their ports.
    let p = peers.clone();
    let got = blocking(move || {
        p[0].send_raw(&ipv4_eth(BCAST, A, [10, 0, 0, 10])).unwrap();
        let heard = [recv(&p[1]).is_some(), recv(&p[2]).is_some()];
        p[1].send_raw(&ipv4_eth(BCAST, B, B_IP)).unwrap();
        [heard, [recv(&p[0]).is_some(), recv(&p[2]).is_some()]]
    })
    .await;
    assert_eq!(got, [[true; 2]; 2]);

    // C forges: B's MAC, B's address behind its own MAC, an ARP reply claiming B's address.
    // Then one honest frame, which is the only thing A sees.
    let p = peers.clone();
    let (to_a, to_b) = blocking(move || {
        p[2].send_raw(&ipv4_eth(A, B, B_IP)).unwrap();
        p[2].send_raw(&ipv4_eth(A, C, B_IP)).unwrap();
        p[2].send_raw(&arp_reply(A, C, B_IP)).unwrap();
        p[2].send_raw(&ipv4_eth(A, C, C_IP)).unwrap();
        let mut to_a = Vec::new();
        while let Some(f) = recv(&p[0]) {
            to_a.push(f);
        }
        (to_a, p[1].try_recv_raw(&mut [0u8; 100]).is_ok())
    })
    .await;
    assert_eq!(to_a, vec![ipv4_eth(A, C, C_IP)], "only C's honest frame");
    assert!(!to_b, "nothing reaches B");
    let c = ports[2].counters.snapshot();
    assert_eq!(
        (c.rx_packets, c.drops_total),
        (4, 3),
        "every forged frame dropped: {c:?}"
    );
    for reason in ["spoofed_mac", "spoofed_ipv4", "spoofed_arp"] {
        assert_eq!(c.drops.get(reason), Some(&1), "{reason}");
    }
    let now = sw.now_ms();
    let b_port = sw.fdb.lookup(&netyard_switch::MacAddr(B), now);
    assert_eq!(b_port, Some(ports[1].id), "B's MAC never moved");

    // Trusted (a router container): the same frame from another address passes.
    ports[2].set_security(None);
    let p = peers.clone();
    let got = blocking(move || {
        p[2].send_raw(&ipv4_eth(A, C, B_IP)).unwrap();
        recv(&p[0])
    })
    .await;
    assert_eq!(got, Some(ipv4_eth(A, C, B_IP)));
    assert_eq!(ports[2].counters.snapshot().drops_total, 3);
}

/// The gateway's in-process port: a unicast TCP super-frame from a port task reaches the
/// consumer whole in the buffer the port task read it into (no copy), a broadcast is copied
/// to it, and both are counted as any port's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_port_gets_unicast_frames_as_buffers_and_floods_as_copies() {
    use netyard_switch::handoff::HandoffPort;
    const G: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
    let Rig { sw, ports, peers } = rig(&[OFFLOAD]);
    let caps = PortCaps {
        vnet_hdr: true,
        gso_tcp: true,
        gso_udp: false,
    };
    let (hp, rx) = HandoffPort::pair(caps, driver::RX_BUF_LEN);
    let gw = sw.add_port("gw", Box::new(hp));
    // The consumer's frames reach the switch as the gateway sends them (it learns G there).
    let mut scratch = Vec::new();
    let from_g = with_hdr(&eth(A, G, 46));
    driver::forward(
        &sw,
        &sw.ports(),
        &gw,
        &from_g,
        sw.now_ms(),
        driver::Entry::Port,
        &mut scratch,
    );
    let peers = Arc::new(peers);
    let p = peers.clone();
    assert!(blocking(move || recv(&p[0])).await.is_some(), "G to A");

    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let sf = tcp_super_frame(G, A, &payload, 1448);
    let bcast = with_hdr(&eth(BCAST, A, 46));
    let p = peers.clone();
    let (sf2, b2) = (sf.clone(), bcast.clone());
    blocking(move || {
        p[0].send_raw(&sf2).unwrap();
        p[0].send_raw(&b2).unwrap();
    })
    .await;
    let mut buf = netyard_switch::sys::pagebuf::PageBuf::new(driver::RX_BUF_LEN).expect("map");
    let got = async {
        let n = rx.recv(&mut buf).await.expect("super-frame");
        let first = buf[..n].to_vec();
        let n = rx.recv(&mut buf).await.expect("broadcast");
        (first, buf[..n].to_vec())
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(2), got)
        .await
        .expect("frames within 2 s");
    assert_eq!(first, sf, "the super-frame whole, header included");
    assert_eq!(second, bcast);
    let c = settled(&gw, |c| c.tx_packets >= 2).await;
    assert_eq!((c.tx_packets, c.tx_segmented, c.drops_total), (2, 0, 0));
    assert_eq!(c.rx_packets, 1, "the frame the gateway sent");
    assert_eq!(ports[0].counters.snapshot().flooded, 1);
}

/// An IPv6 frame from `src` (MAC) to `group` (its 33:33 MAC), carrying ICMPv6 `msg` behind a
/// hop-by-hop header with the router alert option when `hbh` (as MLD messages are sent).
fn ipv6_multicast(src: [u8; 6], group: std::net::Ipv6Addr, msg: &[u8], hbh: bool) -> Vec<u8> {
    use netyard_switch::wire::ipv6::multicast_mac;
    let mut f = Vec::new();
    f.extend_from_slice(&multicast_mac(group).0);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    let ext: &[u8] = &[58, 0, 5, 2, 0, 0, 1, 0];
    let len = msg.len() + if hbh { ext.len() } else { 0 };
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    f.extend_from_slice(&[if hbh { 0 } else { 58 }, 1]);
    f.extend_from_slice(&std::net::Ipv6Addr::UNSPECIFIED.octets());
    f.extend_from_slice(&group.octets());
    if hbh {
        f.extend_from_slice(ext);
    }
    f.extend_from_slice(msg);
    with_hdr(&f)
}

/// What each peer receives next, up to and including the broadcast `marker` every port gets
/// after the frame under test: `true` where the frame under test came first.
fn got_before_marker(peers: &[MemPeer], skip: usize, marker_len: usize) -> Vec<bool> {
    peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == skip {
                return false;
            }
            let first = recv(p).expect("a frame (at least the marker)");
            if first.len() == marker_len {
                return false;
            }
            let marker = recv(p).expect("the marker");
            assert_eq!(
                marker.len(),
                marker_len,
                "port {i}: one frame, then the marker"
            );
            true
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mld_snooping_sends_ipv6_multicast_to_listeners_and_the_router_port_only() {
    use netyard_switch::wire::ipv6::{solicited_node, ALL_NODES, ALL_ROUTERS};
    // Port 0 is the gateway (a multicast router port, the default); 1-3 are endpoints.
    let sw = Switch::new("t", SwitchConfig::default());
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for i in 0..4 {
        let (p, mut peer) = MemPort::pair(OFFLOAD).expect("socketpair");
        peer.set_timeout(Duration::from_millis(2000));
        let sp = sw.add_port(format!("p{i}"), Box::new(p));
        sw.set_mld_router(&sp, i == 0);
        driver::spawn_port(sw.clone(), sp.clone()).expect("driver");
        ports.push(sp);
        peers.push(peer);
    }
    let peers = Arc::new(peers);
    let macs = [[2, 0, 0, 0, 0, 0x10], A, B, C];
    let group = solicited_node("fd00::2".parse().unwrap());
    let other = solicited_node("fd00::99".parse().unwrap());
    let marker = with_hdr(&eth(BCAST, [2, 0, 0, 0, 0, 0x99], 46));
    // Sends `frame` from port `from`, then the marker from the same port (one driver task:
    // the frame has reached every port it goes to before the marker does), and tells which
    // ports got the frame.
    let step = |from: usize, frame: Vec<u8>| {
        let p = peers.clone();
        let marker = marker.clone();
        async move {
            blocking(move || {
                p[from].send_raw(&frame).unwrap();
                p[from].send_raw(&marker).unwrap();
                got_before_marker(&p, from, marker.len())
            })
            .await
        }
    };

    // Port 1's MLDv2 report (change to exclude {}: join) goes to the gateway only.
    let mut report = vec![143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
    report.extend_from_slice(&group.octets());
    let mldv2: std::net::Ipv6Addr = "ff02::16".parse().unwrap();
    let got = step(1, ipv6_multicast(macs[1], mldv2, &report, true)).await;
    assert_eq!(got, [true, false, false, false]);
    assert_eq!(sw.mld_groups_of(ports[1].id), [group]);

    // A neighbour solicitation to that group from port 2: port 1 and the gateway.
    let ns = [135, 0, 0, 0, 0, 0, 0, 0];
    let got = step(2, ipv6_multicast(macs[2], group, &ns, false)).await;
    assert_eq!(got, [true, true, false, false]);

    // To a group nobody reported: flooded.
    let got = step(2, ipv6_multicast(macs[2], other, &ns, false)).await;
    assert_eq!(got, [true, true, false, true]);

    // A router solicitation: the gateway only.
    let rs = [133, 0, 0, 0, 0, 0, 0, 0];
    let got = step(3, ipv6_multicast(macs[3], ALL_ROUTERS, &rs, false)).await;
    assert_eq!(got, [true, false, false, false]);

    // All nodes: everyone.
    let ra = [134, 0, 0, 0, 0, 0, 0, 0];
    let got = step(0, ipv6_multicast(macs[0], ALL_NODES, &ra, false)).await;
    assert_eq!(got, [false, true, true, true]);

    // Port 1 leaves (change to include {}): the group floods again; and a removed port is
    // forgotten.
    report[8] = 3;
    step(1, ipv6_multicast(macs[1], mldv2, &report, true)).await;
    assert!(sw.mld_groups_of(ports[1].id).is_empty());
    report[8] = 4;
    step(3, ipv6_multicast(macs[3], mldv2, &report, true)).await;
    assert_eq!(sw.mld_groups_of(ports[3].id), [group]);
    sw.remove_port(ports[3].id);
    assert!(sw.mld_groups_of(ports[3].id).is_empty());
}
