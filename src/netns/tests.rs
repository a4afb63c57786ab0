//! Tests in real namespaces (they need root, like the rest of netyard's namespace tests).
//!
//! Each test makes its own namespaces with random names (`ny-t-*`) and random subnets in
//! 10.222.0.0/16, and a guard removes them even when an assertion fails. Assertions run on
//! `ip -j` output, never on the code's own view.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// A network namespace made with `ip netns add`, deleted on drop.
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(tag: &str) -> Self {
        let name = format!("ny-t-{tag}-{:08x}", rand::random::<u32>());
        run("ip", &["netns", "add", &name]);
        TestNetns { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn target(&self) -> NsTarget {
        NsTarget::from_paths(self.path(), None).expect("target of a fresh netns")
    }

    /// `ip -n NS -j ARGS...`
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", self.name.as_str(), "-j"];
        full.extend_from_slice(args);
        json(&run("ip", &full))
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
}

/// A random endpoint: (address, gateway, MAC) in 10.222.R.0/24.
fn random_endpoint() -> (Ipv4Addr, Ipv4Addr, [u8; 6]) {
    let r: u8 = rand::random();
    let mut mac: [u8; 6] = rand::random();
    mac[0] = 0x02; // locally administered unicast
    (
        Ipv4Addr::new(10, 222, r, 2),
        Ipv4Addr::new(10, 222, r, 1),
        mac,
    )
}

fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

/// Asserts the whole endpoint state through `ip`: MAC, MTU, up, address, lo up, default
/// route. `ip` runs `ip -j ARGS` in the namespace.
fn assert_endpoint(
    ip: impl Fn(&[&str]) -> Value,
    ifname: &str,
    mac: [u8; 6],
    mtu: u32,
    addr: Ipv4Addr,
    gw: Ipv4Addr,
) {
    let links = ip(&["addr", "show", "dev", ifname]);
    let link = &links[0];
    assert_eq!(link["ifname"], ifname, "{links}");
    assert_eq!(link["address"], mac_str(mac), "{links}");
    assert_eq!(link["mtu"], mtu, "{links}");
    assert!(has_flag(link, "UP"), "{ifname} not up: {links}");
    assert!(has_flag(link, "LOWER_UP"), "{ifname} no carrier: {links}");
    let inet: Vec<&Value> = link["addr_info"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["family"] == "inet").collect())
        .unwrap_or_default();
    assert_eq!(inet.len(), 1, "exactly one IPv4 address expected: {links}");
    assert_eq!(inet[0]["local"], addr.to_string(), "{links}");
    assert_eq!(inet[0]["prefixlen"], 24, "{links}");

    let lo = ip(&["link", "show", "dev", "lo"]);
    assert!(has_flag(&lo[0], "UP"), "lo not up: {lo}");

    let routes = ip(&["route", "show", "default"]);
    let routes = routes.as_array().expect("route list");
    assert_eq!(routes.len(), 1, "one default route expected: {routes:?}");
    assert_eq!(routes[0]["gateway"], gw.to_string(), "{routes:?}");
    assert_eq!(routes[0]["dev"], ifname, "{routes:?}");
}

/// Polls `cond` for up to two seconds.
async fn eventually<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_in_fresh_netns_is_configured_and_dies_with_its_fd() {
    let ns = TestNetns::new("tap");
    let target = ns.target();
    assert_eq!(target.userns(), None);

    let fds = open_in_ns(&target, NsOpenRequest::tap("eth0", true))
        .await
        .expect("open_in_ns");
    assert_eq!(fds.fds.len(), 1);
    let NsFds { netlink, fds } = fds;
    let handle = netlink.into_handle().expect("handle");
    assert!(link_exists(&handle, "eth0").await.unwrap());
    assert!(link_index(&handle, "eth0").await.unwrap().is_some());
    assert_eq!(link_index(&handle, "nothere0").await.unwrap(), None);

    let (addr, gw, mac) = random_endpoint();
    for _ in 0..2 {
        // The second round checks idempotency.
        configure_endpoint(&handle, "eth0", mac, 1400, addr.into(), 24, Some(gw.into()))
            .await
            .expect("configure_endpoint");
    }
    assert_endpoint(|a| ns.ip_json(a), "eth0", mac, 1400, addr, gw);

    // The TAP belongs to its descriptor.
    drop(fds);
    assert!(
        eventually(|| async { !link_exists(&handle, "eth0").await.unwrap() }).await,
        "TAP still there after its fd was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_bound_inside_the_namespace() {
    let ns = TestNetns::new("sock");
    let target = ns.target();
    let fds = open_in_ns(&target, NsOpenRequest::tap("eth0", false))
        .await
        .unwrap();
    let handle = fds.netlink.into_handle().unwrap();
    let (addr, gw, mac) = random_endpoint();
    configure_endpoint(&handle, "eth0", mac, 1500, addr.into(), 24, Some(gw.into()))
        .await
        .unwrap();

    // With lo up, the DNS resolver's address is local inside the namespace.
    let dns: SocketAddr = "127.0.0.11:53".parse().unwrap();
    let client_addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let req = NsOpenRequest::netlink_only()
        .with(NsOpen::UdpBind(dns))
        .with(NsOpen::TcpListen(dns))
        .with(NsOpen::UdpBind(client_addr));
    let sockets = open_in_ns(&target, req).await.expect("sockets");
    let [udp, tcp, client]: [std::os::fd::OwnedFd; 3] =
        sockets.fds.try_into().expect("three sockets");
    let udp = UdpSocket::from(udp);
    let client = UdpSocket::from(client);
    udp.set_nonblocking(false).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(udp.local_addr().unwrap(), dns);

    // A datagram from the namespace's loopback reaches the socket: both are in there.
    client.send_to(b"ping", dns).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = udp
        .recv_from(&mut buf)
        .expect("datagram inside the namespace");
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));

    let listening = run("ip", &["netns", "exec", &ns.name, "ss", "-Hltn"]);
    assert!(listening.contains("127.0.0.11:53"), "{listening}");
    drop(tcp);
}

#[tokio::test]
async fn bad_targets_and_requests_fail_clearly() {
    match NsTarget::from_paths("/nonexistent/ny-netns", None) {
        Err(NetnsError::OpenNamespace { .. }) => {}
        other => panic!("{other:?}"),
    }
    let file = std::env::temp_dir().join(format!("ny-t-notns-{:08x}", rand::random::<u32>()));
    std::fs::write(&file, b"x").unwrap();
    let res = NsTarget::from_paths(&file, None);
    let _ = std::fs::remove_file(&file);
    match res {
        Err(e @ NetnsError::NotANamespace { .. }) => {
            assert!(e.to_string().contains("not a namespace file"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match NsTarget::from_paths("/proc/self/ns/user", None) {
        Err(NetnsError::WrongNamespaceType {
            expected: "network",
            found: "user",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match NsTarget::from_paths(
        "/proc/self/ns/net",
        Some(PathBuf::from("/proc/self/ns/net")),
    ) {
        Err(NetnsError::WrongNamespaceType {
            expected: "user",
            found: "network",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Our own user namespace is not one to join.
    let own = NsTarget::from_paths(
        "/proc/self/ns/net",
        Some(PathBuf::from("/proc/self/ns/user")),
    )
    .unwrap();
    assert_eq!(own.userns(), None);
    let me = NsTarget::from_pid(std::process::id()).unwrap();
    assert_eq!(me.userns(), None);

    let ns = TestNetns::new("bad");
    let target = ns.target();
    match open_in_ns(&target, NsOpenRequest::tap("a-name-too-long-0", false)).await {
        Err(NetnsError::InvalidIfname { .. }) => {}
        other => panic!("{other:?}"),
    }
    // "lo" exists and is no TAP: the kernel refuses, and the error names device and netns.
    match open_in_ns(&target, NsOpenRequest::tap("lo", false)).await {
        Err(e @ NetnsError::CreateTap { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("lo") && msg.contains(&ns.name), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let fds = open_in_ns(&target, NsOpenRequest::netlink_only())
        .await
        .unwrap();
    let handle = fds.netlink.into_handle().unwrap();
    match configure_endpoint(
        &handle,
        "nothere0",
        [2, 0, 0, 0, 0, 1],
        1500,
        Ipv4Addr::new(10, 222, 0, 2).into(),
        24,
        None,
    )
    .await
    {
        Err(NetnsError::LinkNotFound { ifname }) => assert_eq!(ifname, "nothere0"),
        other => panic!("{other:?}"),
    }
    match configure_endpoint(
        &handle,
        "lo",
        [2, 0, 0, 0, 0, 1],
        1500,
        Ipv4Addr::new(10, 222, 0, 2).into(),
        33,
        None,
    )
    .await
    {
        Err(NetnsError::InvalidAddress { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Opens `req` in `target`, retrying while the TAP is busy: a TAP fd just closed may live on
/// for a moment in a child that another test thread forked (to run `ip`, say) until it execs.
async fn open_retrying_busy(target: &NsTarget, req: NsOpenRequest) -> Result<NsFds, NetnsError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match open_in_ns(target, req.clone()).await {
            Err(NetnsError::CreateTap { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// `linkinfo.info_data` of `ifname` (`persist`, `user`, `vnet_hdr`...), from `ip -d -j`.
fn tun_info(ip: impl Fn(&[&str]) -> Value, ifname: &str) -> Value {
    let links = ip(&["-d", "link", "show", "dev", ifname]);
    assert_eq!(links[0]["linkinfo"]["info_kind"], "tun", "{links}");
    links[0]["linkinfo"]["info_data"].clone()
}

/// A daemon restart as the TAP sees it: a persistent TAP outlives the fd with its
/// configuration, is never created twice, and is reopened by name with offloads; a missing
/// one is not silently made anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_tap_outlives_its_fd_and_is_reopened() {
    use netyard_switch::sys::tap::set_persist;
    use netyard_switch::sys::TapPort;
    use netyard_switch::Port;

    let ns = TestNetns::new("ptap");
    let target = ns.target();
    let persistent = NsOpenRequest::tap_mode("eth0", true, TapMode::Persistent);
    assert_eq!(
        persistent.items,
        vec![NsOpen::Tap {
            ifname: "eth0".into(),
            vnet_hdr: true,
            mode: TapMode::Persistent
        }]
    );
    let reopen = NsOpenRequest::tap_mode("eth0", true, TapMode::Reopen);
    let NsFds { netlink, fds } = open_in_ns(&target, persistent.clone())
        .await
        .expect("persistent TAP");
    let handle = netlink.into_handle().expect("handle");
    let (addr, gw, mac) = random_endpoint();
    configure_endpoint(&handle, "eth0", mac, 1400, addr.into(), 24, Some(gw.into()))
        .await
        .expect("configure_endpoint");
    let info = tun_info(|a| ns.ip_json(a), "eth0");
    assert_eq!(info["persist"], true, "{info}");
    assert_eq!(info["vnet_hdr"], true, "{info}");
    assert_eq!(info["user"], "root", "{info}");

    // The "daemon" goes away: the TAP and its configuration stay.
    drop(fds);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        link_exists(&handle, "eth0").await.unwrap(),
        "died with its fd"
    );
    let links = ns.ip_json(&["addr", "show", "dev", "eth0"]);
    assert_eq!(links[0]["address"], mac_str(mac), "{links}");
    assert_eq!(links[0]["mtu"], 1400, "{links}");

    // Creating it again is refused, whatever its state.
    match open_in_ns(&target, persistent.clone()).await {
        Err(e @ NetnsError::TapExists { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("eth0") && msg.contains(&ns.name), "{msg}");
            assert!(msg.contains("creating a persistent TAP"), "{msg}");
        }
        other => panic!("{other:?}"),
    }

    // Reopened by name, it carries GSO offloads again and the endpoint is as configured.
    let NsFds { fds, .. } = open_retrying_busy(&target, reopen.clone())
        .await
        .expect("reopen");
    let [fd]: [std::os::fd::OwnedFd; 1] = fds.try_into().expect("one TAP fd");
    let tap = TapPort::from_fd(fd, "eth0".into(), true).expect("TapPort on a reopened fd");
    assert!(
        tap.caps().vnet_hdr && tap.caps().gso_tcp,
        "{:?}",
        tap.caps()
    );
    assert_endpoint(|a| ns.ip_json(a), "eth0", mac, 1400, addr, gw);

    // Held by the reopened fd, it cannot be reopened twice.
    match open_in_ns(&target, reopen.clone()).await {
        Err(
            e @ NetnsError::CreateTap {
                mode: TapMode::Reopen,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("reopening persistent TAP device eth0"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }

    // A missing TAP is an error naming it and the namespace, and nothing is created.
    match open_in_ns(
        &target,
        NsOpenRequest::tap_mode("eth9", true, TapMode::Reopen),
    )
    .await
    {
        Err(e @ NetnsError::TapNotFound { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "TAP eth9 does not exist in {} (reopening a persistent TAP)",
                ns.path().display()
            )
        ),
        other => panic!("{other:?}"),
    }
    assert!(!link_exists(&handle, "eth9").await.unwrap());

    // Deleting the endpoint: clear the flag, close the fd, and the TAP is gone.
    drop(tap);
    let NsFds { fds, .. } = open_retrying_busy(&target, reopen.clone())
        .await
        .expect("reopen");
    let [fd]: [std::os::fd::OwnedFd; 1] = fds.try_into().expect("one TAP fd");
    set_persist(std::os::fd::AsFd::as_fd(&fd), false).expect("TUNSETPERSIST 0");
    drop(fd);
    assert!(
        eventually(|| async { !link_exists(&handle, "eth0").await.unwrap() }).await,
        "TAP still there after TUNSETPERSIST 0 and close"
    );
    match open_in_ns(&target, reopen).await {
        Err(NetnsError::TapNotFound { ifname, .. }) => assert_eq!(ifname, "eth0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn identity_of_a_named_netns_follows_its_path() {
    let ns = TestNetns::new("id");
    let path = ns.path();
    let id = identify(&ns.target(), None).expect("identify");
    assert_eq!((id.pid, id.pid_start), (None, None));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (id.dev, id.ino),
        (
            std::os::unix::fs::MetadataExt::dev(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta)
        )
    );
    assert_eq!(check(&path, &id), NsStatus::Same);

    // Keep the old namespace alive, as the daemon's TAP fd does: its inode number cannot go
    // to the namespace made next.
    let held = std::fs::File::open(&path).unwrap();
    run("ip", &["netns", "del", &ns.name]);
    assert_eq!(check(&path, &id), NsStatus::Gone);
    run("ip", &["netns", "add", &ns.name]);
    assert_eq!(check(&path, &id), NsStatus::Replaced);
    drop(held);

    // What is not a network namespace is none.
    assert_eq!(check(Path::new("/proc/self/ns/user"), &id), NsStatus::Gone);
    let file = std::env::temp_dir().join(format!("ny-t-notns-{:08x}", rand::random::<u32>()));
    std::fs::write(&file, b"x").unwrap();
    let status = check(&file, &id);
    let _ = std::fs::remove_file(&file);
    assert_eq!(status, NsStatus::Gone);
}

#[test]
fn identity_of_a_process_netns_ends_with_the_process() {
    let own_netns = ns_inode("/proc/self/ns/net");
    let mut child = KillOnDrop(
        Command::new("unshare")
            .args(["-n", "sleep", "30"])
            .spawn()
            .expect("unshare -n sleep 30"),
    );
    let pid = child.0.id();
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let deadline = Instant::now() + Duration::from_secs(10);
    // unshare execs sleep in the same process once the namespace is made.
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "sleep")
        || ns_inode(&path.to_string_lossy()) == own_netns
    {
        assert!(
            Instant::now() < deadline,
            "unshare did not set up its netns"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let target = NsTarget::from_pid(pid).expect("target");
    assert_eq!(target.netns(), path);
    let id = identify(&target, Some(pid)).expect("identify");
    assert_eq!(id.pid, Some(pid));
    assert!(id.pid_start.is_some(), "{id:?}");
    assert_eq!(check(&path, &id), NsStatus::Same);
    // Without the pid, the namespace alone: the same too.
    let ns_only = NsIdentity {
        pid: None,
        pid_start: None,
        ..id.clone()
    };
    assert_eq!(check(&path, &ns_only), NsStatus::Same);
    // The pid now started at another time: a recycled pid, another process.
    let recycled = NsIdentity {
        pid_start: id.pid_start.map(|s| s + 1),
        ..id.clone()
    };
    assert_eq!(check(&path, &recycled), NsStatus::Replaced);
    // Another namespace behind the path.
    let other = NsIdentity {
        ino: id.ino + 1,
        ..id.clone()
    };
    assert_eq!(check(&path, &other), NsStatus::Replaced);

    child.0.kill().expect("kill");
    child.0.wait().expect("reap");
    assert_eq!(check(&path, &id), NsStatus::Gone);
    assert_eq!(check(&path, &ns_only), NsStatus::Gone);
    match identify(&target, Some(pid)) {
        Err(NetnsError::ProcStat { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_lists_routes_and_address_subnets() {
    let ns = TestNetns::new("rt");
    let a: u8 = rand::random();
    let b = a.wrapping_add(1);
    // (No dummy module on every machine: a veth pair inside the namespace does.)
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d0", "up"]);
    ns.ip(&["link", "set", "d1", "up"]);
    ns.ip(&["addr", "add", &format!("10.222.{a}.5/24"), "dev", "d0"]);
    ns.ip(&[
        "route",
        "add",
        &format!("10.223.{b}.0/24"),
        "via",
        &format!("10.222.{a}.1"),
    ]);
    ns.ip(&["route", "add", "default", "via", &format!("10.222.{a}.1")]);

    let fds = open_in_ns(&ns.target(), NsOpenRequest::netlink_only())
        .await
        .unwrap();
    let handle = fds.netlink.into_handle().unwrap();
    let nets = host_routes(&handle).await.unwrap();
    let want: Vec<ipnet::IpNet> = vec![
        format!("10.222.{a}.0/24").parse().unwrap(),
        format!("10.223.{b}.0/24").parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    let mut want = want;
    want.sort();
    // lo is down, so 127.0.0.0/8 is only there once lo is up; accept both.
    let without_lo: Vec<_> = want
        .iter()
        .filter(|n| n.to_string() != "127.0.0.0/8")
        .cloned()
        .collect();
    assert!(nets == want || nets == without_lo, "{nets:?}");

    // The daemon's own namespace works too.
    let host = host_handle().unwrap();
    host_routes(&host).await.unwrap();
}

/// Runs `body` on a thread whose network namespace is `netns`, with a current-thread
/// runtime: a stand-in for a daemon started with `ip netns exec H netyard daemon`.
fn run_as_daemon_in<F, Fut>(netns: PathBuf, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn veth_pair_into_netns_is_configured_and_deleted() {
    let host_ns = TestNetns::new("vh");
    let ct = TestNetns::new("vc");
    let host_name = format!("nyv{:08x}", rand::random::<u32>());
    let target = ct.target();
    let ct_name = ct.name.clone();
    let host_ns_name = host_ns.name.clone();
    run_as_daemon_in(host_ns.path(), move || async move {
        let ip_host = |args: &[&str]| {
            let mut full = vec!["-n", host_ns_name.as_str(), "-j"];
            full.extend_from_slice(args);
            json(&run("ip", &full))
        };
        let ip_ct = |args: &[&str]| {
            let mut full = vec!["-n", ct_name.as_str(), "-j"];
            full.extend_from_slice(args);
            json(&run("ip", &full))
        };
        let host = host_handle().unwrap();
        create_veth(&host, &host_name, &target, "eth1", 1450)
            .await
            .expect("create_veth");

        // Host end: up, MTU, IPv6 off and no address at all.
        let links = ip_host(&["addr", "show", "dev", &host_name]);
        assert!(has_flag(&links[0], "UP"), "{links}");
        assert_eq!(links[0]["mtu"], 1450, "{links}");
        assert_eq!(
            links[0]["addr_info"].as_array().map_or(0, Vec::len),
            0,
            "{links}"
        );
        let v6 =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{host_name}/disable_ipv6"))
                .unwrap();
        assert_eq!(v6.trim(), "1");

        // Peer: inside the container namespace under its final name, and only there.
        let fds = open_in_ns(&target, NsOpenRequest::netlink_only())
            .await
            .unwrap();
        let ns_handle = fds.netlink.into_handle().unwrap();
        assert!(link_exists(&ns_handle, "eth1").await.unwrap());
        assert!(!link_exists(&host, "eth1").await.unwrap());
        let (addr, gw, mac) = random_endpoint();
        configure_endpoint(
            &ns_handle,
            "eth1",
            mac,
            1450,
            addr.into(),
            24,
            Some(gw.into()),
        )
        .await
        .expect("configure_endpoint");
        assert_endpoint(ip_ct, "eth1", mac, 1450, addr, gw);

        // A taken name fails and leaves nothing new behind.
        let other = format!("nyw{:08x}", rand::random::<u32>());
        match create_veth(&host, &other, &target, "eth1", 1450).await {
            Err(NetnsError::CreateVeth { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(!link_exists(&host, &other).await.unwrap());

        // Deleting the host end removes both ends.
        assert!(delete_link(&host, &host_name).await.unwrap());
        assert!(!link_exists(&host, &host_name).await.unwrap());
        assert!(
            eventually(|| async { !link_exists(&ns_handle, "eth1").await.unwrap() }).await,
            "peer survived"
        );
        assert!(!delete_link(&host, &host_name).await.unwrap());
    });
}

// ---- rootless ----

const ROOTLESS_PID_ENV: &str = "NETYARD_TEST_ROOTLESS_HOLDER";
const ROOTLESS_NET_ENV: &str = "NETYARD_TEST_ROOTLESS_NET";
const ROOTLESS_USER: &str = "nytest";
const READY: &str = "NY-ROOTLESS-READY";

/// Kills and reaps a child process on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ensure_test_user() -> (String, String) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, ROOTLESS_USER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if id("-u").is_none() {
        // Another test binary may be creating it at the same time: ignore failure, re-check.
        let _ = Command::new("useradd")
            .args(["-M", "-r", "-s", "/usr/sbin/nologin", ROOTLESS_USER])
            .status();
    }
    let uid = id("-u").expect("test user nytest");
    let gid = id("-g").expect("test user nytest");
    (uid, gid)
}

fn ensure_tun_world_accessible() {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata("/dev/net/tun").expect("/dev/net/tun");
    if meta.permissions().mode() & 0o666 != 0o666 {
        // Its usual mode; some machines ship it 0600.
        std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o666))
            .expect("chmod /dev/net/tun");
    }
}

fn ns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// An unprivileged user owns a user namespace with a network namespace in it (a rootless
/// container); an unprivileged, multi-threaded process of that user (the daemon) creates a
/// TAP inside it, configures it over the netlink socket it got back, and binds the DNS
/// address there. Root then checks the result with `ip`.
#[test]
fn rootless_tap_through_user_namespace() {
    let (uid, gid) = ensure_test_user();
    ensure_tun_world_accessible();
    let setpriv = |cmd: &mut Command| {
        cmd.args(["--reuid", &uid, "--regid", &gid, "--clear-groups"]);
    };

    let mut holder = Command::new("setpriv");
    setpriv(&mut holder);
    holder.args([
        "unshare",
        "--user",
        "--map-root-user",
        "--net",
        "sleep",
        "120",
    ]);
    let holder = KillOnDrop(holder.spawn().expect("start the namespace holder"));
    let pid = holder.0.id();
    let netns_path = format!("/proc/{pid}/ns/net");
    let own_userns = ns_inode("/proc/self/ns/user");
    let own_netns = ns_inode("/proc/self/ns/net");
    let deadline = Instant::now() + Duration::from_secs(10);
    // unshare execs sleep in the same process once the namespaces are made and mapped.
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "sleep")
        || ns_inode(&format!("/proc/{pid}/ns/user")) == own_userns
        || ns_inode(&netns_path) == own_netns
    {
        assert!(
            Instant::now() < deadline,
            "holder did not set up its namespaces"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let r: u8 = rand::random();
    let exe = std::env::current_exe().unwrap();
    let mut worker = Command::new("setpriv");
    setpriv(&mut worker);
    worker
        .arg(&exe)
        .args([
            "netns::tests::rootless_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOTLESS_PID_ENV, pid.to_string())
        .env(ROOTLESS_NET_ENV, r.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut worker = KillOnDrop(worker.spawn().expect("start the rootless worker"));
    let stdout = worker.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.trim_end().ends_with(READY) => break,
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "rootless worker ended or hung before ready ({e}); its output:\n{}",
                seen.join("\n")
            ),
        }
    }

    // Root looks into the container's namespace.
    let ip = |args: &[&str]| {
        let netns_arg = format!("--net={netns_path}");
        let mut full = vec![netns_arg.as_str(), "ip", "-j"];
        full.extend_from_slice(args);
        json(&run("nsenter", &full))
    };
    let (addr, gw, mac) = rootless_endpoint(r);
    assert_endpoint(ip, "eth0", mac, 1400, addr, gw);
    let listening = run("nsenter", &[&format!("--net={netns_path}"), "ss", "-Hlun"]);
    assert!(listening.contains("127.0.0.11:53"), "{listening}");
    // The persistent TAP the worker made through its child, whose fd is closed: still there,
    // owned by the worker's user (the child set its uid as mapped in the user namespace).
    let info = tun_info(ip, "eth1");
    assert_eq!(info["persist"], true, "{info}");
    assert!(
        info["user"] == ROOTLESS_USER || info["user"] == uid.as_str(),
        "{info}"
    );

    let mut stdin = worker.0.stdin.take().unwrap();
    writeln!(stdin, "done").unwrap();
    drop(stdin);
    let status = worker.0.wait().unwrap();
    assert!(
        status.success(),
        "rootless worker: {status}; output:\n{}",
        seen.join("\n")
    );
}

fn rootless_endpoint(r: u8) -> (Ipv4Addr, Ipv4Addr, [u8; 6]) {
    (
        Ipv4Addr::new(10, 222, r, 2),
        Ipv4Addr::new(10, 222, r, 1),
        [0x02, 0x6e, 0x79, 0x00, 0x00, r],
    )
}

/// The unprivileged half of [`rootless_tap_through_user_namespace`], run by it in a child
/// process as the test user. Does nothing when run directly.
#[test]
#[ignore = "run by rootless_tap_through_user_namespace as an unprivileged user"]
fn rootless_worker() {
    let Ok(pid) = std::env::var(ROOTLESS_PID_ENV) else {
        return;
    };
    let pid: u32 = pid.parse().unwrap();
    let r: u8 = std::env::var(ROOTLESS_NET_ENV).unwrap().parse().unwrap();
    assert!(!nix::unistd::geteuid().is_root(), "must run unprivileged");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let target = NsTarget::from_pid(pid).expect("target");
        assert!(target.userns().is_some(), "{target:?}");

        // Without its user namespace the kernel refuses, and the error says what to do.
        let bare = NsTarget::from_paths(target.netns(), None).unwrap();
        match open_in_ns(&bare, NsOpenRequest::netlink_only()).await {
            Err(e @ NetnsError::JoinNetns { .. }) => {
                assert!(e.to_string().contains("--userns"), "{e}")
            }
            other => panic!("{other:?}"),
        }

        let NsFds { netlink, fds } = open_in_ns(&target, NsOpenRequest::tap("eth0", true))
            .await
            .expect("open_in_ns through the user namespace");
        assert_eq!(fds.len(), 1);
        let handle = netlink.into_handle().unwrap();
        let (addr, gw, mac) = rootless_endpoint(r);
        configure_endpoint(&handle, "eth0", mac, 1400, addr.into(), 24, Some(gw.into()))
            .await
            .expect("configure_endpoint over the namespace's netlink socket");

        // Port 53 inside the namespace: privileged there, not here.
        let dns: SocketAddr = "127.0.0.11:53".parse().unwrap();
        let sockets = open_in_ns(
            &target,
            NsOpenRequest::netlink_only().with(NsOpen::UdpBind(dns)),
        )
        .await
        .expect("bind the DNS address in the namespace");

        // veth needs privilege in the daemon's own namespace, which a rootless daemon lacks.
        let host = host_handle().unwrap();
        match create_veth(&host, "nyv-rootless", &target, "eth9", 1500).await {
            Err(e @ NetnsError::VethNeedsPrivilege { .. }) => {
                assert!(e.to_string().contains("--kind tap"), "{e}")
            }
            other => panic!("{other:?}"),
        }

        // A persistent TAP, made by the forked child inside the user namespace, outlives
        // its fd.
        let persistent = NsOpenRequest::tap_mode("eth1", true, TapMode::Persistent);
        let made = open_in_ns(&target, persistent.clone())
            .await
            .expect("persistent TAP through the user namespace");
        drop(made);
        assert!(link_exists(&handle, "eth1").await.unwrap());

        println!("{READY}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        drop(sockets);
        drop(fds);

        // After root looked: the child path refuses to make it twice, reopens it (an
        // unprivileged "restarted daemon") and does not invent a missing one.
        match open_in_ns(&target, persistent).await {
            Err(NetnsError::TapExists { ifname, .. }) => assert_eq!(ifname, "eth1"),
            other => panic!("{other:?}"),
        }
        let reopened = open_in_ns(
            &target,
            NsOpenRequest::tap_mode("eth1", true, TapMode::Reopen),
        )
        .await
        .expect("reopen through the user namespace");
        let [fd]: [std::os::fd::OwnedFd; 1] = reopened.fds.try_into().expect("one TAP fd");
        let tap = netyard_switch::sys::TapPort::from_fd(fd, "eth1".into(), true)
            .expect("TapPort on a reopened fd");
        match open_in_ns(
            &target,
            NsOpenRequest::tap_mode("eth8", true, TapMode::Reopen),
        )
        .await
        {
            Err(NetnsError::TapNotFound { ifname, .. }) => assert_eq!(ifname, "eth8"),
            other => panic!("{other:?}"),
        }
        assert!(!link_exists(&handle, "eth8").await.unwrap());
        drop(tap);
    });
}
