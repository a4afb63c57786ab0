//! The egress and published-port benchmark: a container reaching the outside world through
//! netyard's router (TAP endpoint, MTU 1500) against slirp4netns and pasta (each at MTU 1500
//! and 65520), in the same run on the same machine.
//!
//! Run as root: `cargo bench --bench egress -- [--seconds N] [--runs N] [--only LIST]
//! [--udp-tool iperf3|rust] [--json FILE]`. benches/README.md describes the topology and what is
//! measured. This is a measurement, never a test: nothing here asserts on a figure, and a test
//! that fails (netyard's TCP egress while it is being built) is reported as n/a and the run goes
//! on.
//!
//! Every scenario runs in namespaces made for it: "host" (where netyard, slirp4netns or pasta
//! runs), "outside" (joined to host by a veth, holding the servers at 198.18.N.2) and the
//! container behind the tool. No namespace has a route anywhere else.

#[path = "common/mod.rs"]
mod common;
#[path = "podman/mod.rs"]
mod podman;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    can_make_namespaces, cpu_seconds_of, each_run, finish, first_line, interrupted, ip, ip_addr_up,
    iperf_client, keep_notes, last_lines, median_of, netyard_if, nsexec, parse_args, print_summary,
    run_child, run_setup, run_timed, scratch_dir, tcp_run, udp_bound, udp_connected, udp_run,
    which, BaseOpts, Daemon, MetricDef, Namespaces, Run, Servers,
};

/// Prefix of every namespace this bench makes: `nye-<pid>-<run><tool>-<role>`.
const NS_PREFIX: &str = "nye-";
const TMP_PREFIX: &str = "netyard-egbench-";
/// iperf3 servers: in "outside" for egress, in the container for the published port.
const IPERF_PORT: u16 = 5201;
/// The connection-rate server in the container.
const ACCEPT_PORT: u16 = 5202;
/// The rust UDP sink in "outside".
const UDP_SINK_PORT: u16 = 5203;
/// Host ports published to the container's IPERF_PORT and ACCEPT_PORT.
const PUB_IPERF_PORT: u16 = 15301;
const PUB_ACCEPT_PORT: u16 = 15302;

// ---------------------------------------------------------------------------------------------
// Tools (the scenarios) and tests.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Netyard,
    Slirp,
    Pasta,
    /// Rootless Podman's container through Podman's own slirp4netns.
    PodmanSlirp,
    /// Rootless Podman's container through netyard's slirp4netns front.
    PodmanNetyard,
    /// pasta from `--pasta PATH` (a current build: ../shared/tools/modern-pasta.sh), set up
    /// as Debian's.
    PastaNew,
    /// Not a product: the floor of a relay's design. The container on a veth with the kernel's
    /// TCP, and a minimal userspace TCP relay in "host" (a thread per direction, `read` and
    /// `write`, nothing else): the copies and the two TCP connections every relaying helper
    /// (slirp4netns, pasta, netyard's router) pays, with no L2, no userspace TCP and no event
    /// loop. What it reaches bounds what any such helper reaches on this machine.
    FloorRelay,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tool {
    kind: Kind,
    mtu: u32,
}

const TOOLS: [Tool; 12] = [
    Tool {
        kind: Kind::Netyard,
        mtu: 1500,
    },
    Tool {
        kind: Kind::Slirp,
        mtu: 1500,
    },
    Tool {
        kind: Kind::Slirp,
        mtu: 65520,
    },
    Tool {
        kind: Kind::Pasta,
        mtu: 1500,
    },
    Tool {
        kind: Kind::Pasta,
        mtu: 65520,
    },
    Tool {
        kind: Kind::PastaNew,
        mtu: 1500,
    },
    Tool {
        kind: Kind::PastaNew,
        mtu: 65520,
    },
    Tool {
        kind: Kind::PodmanNetyard,
        mtu: 1500,
    },
    Tool {
        kind: Kind::PodmanNetyard,
        mtu: 65520,
    },
    Tool {
        kind: Kind::PodmanSlirp,
        mtu: 1500,
    },
    Tool {
        kind: Kind::PodmanSlirp,
        mtu: 65520,
    },
    Tool {
        kind: Kind::FloorRelay,
        mtu: 1500,
    },
];

impl Tool {
    fn name(self) -> String {
        match self.kind {
            Kind::Netyard => "netyard".to_string(),
            Kind::Slirp => format!("slirp4netns-{}", self.mtu),
            Kind::Pasta => format!("pasta-{}", self.mtu),
            Kind::PastaNew => format!("pasta-new-{}", self.mtu),
            Kind::PodmanSlirp => format!("podman-slirp4netns-{}", self.mtu),
            Kind::PodmanNetyard => format!("podman-netyard-{}", self.mtu),
            Kind::FloorRelay => "floor-relay".to_string(),
        }
    }

    /// A scenario with rootless Podman in the loop.
    fn podman(self) -> bool {
        matches!(self.kind, Kind::PodmanSlirp | Kind::PodmanNetyard)
    }

    /// Short tag for namespace names.
    fn tag(self) -> String {
        match self.kind {
            Kind::Netyard => "ny".to_string(),
            Kind::Slirp => format!("s{}", self.mtu / 1000),
            Kind::Pasta => format!("p{}", self.mtu / 1000),
            Kind::PastaNew => format!("q{}", self.mtu / 1000),
            Kind::PodmanSlirp => format!("ps{}", self.mtu / 1000),
            Kind::PodmanNetyard => format!("pn{}", self.mtu / 1000),
            Kind::FloorRelay => "fr".to_string(),
        }
    }

    /// Third octet of the scenario's addresses.
    fn octet(self) -> u8 {
        TOOLS.iter().position(|t| *t == self).unwrap_or(0) as u8 + 1
    }

    /// Names `--only` accepts for it.
    fn matches(self, s: &str) -> bool {
        let kind = match self.kind {
            Kind::Netyard => "netyard",
            Kind::Slirp => "slirp4netns",
            Kind::Pasta => "pasta",
            Kind::PastaNew => "pasta-new",
            Kind::PodmanSlirp => "podman-slirp4netns",
            Kind::PodmanNetyard => "podman-netyard",
            Kind::FloorRelay => "floor",
        };
        s == self.name()
            || s == kind
            || (self.podman() && s == "podman")
            || (self.kind == Kind::PastaNew && s == "pasta")
            || (self.kind == Kind::Slirp && (s == "slirp" || s == format!("slirp-{}", self.mtu)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Test {
    TcpOut,
    TcpIn,
    Udp64,
    PubTcp,
    PubCps,
    /// The same over IPv6 (netyard's dual-stack network; the peers' scenarios are IPv4-only).
    TcpOut6,
    TcpIn6,
    PubTcp6,
}

impl Test {
    const ALL: [Test; 8] = [
        Test::TcpOut,
        Test::TcpIn,
        Test::Udp64,
        Test::PubTcp,
        Test::PubCps,
        Test::TcpOut6,
        Test::TcpIn6,
        Test::PubTcp6,
    ];

    fn name(self) -> &'static str {
        match self {
            Test::TcpOut => "tcp-out",
            Test::TcpIn => "tcp-in",
            Test::Udp64 => "udp64",
            Test::PubTcp => "pub-tcp",
            Test::PubCps => "pub-cps",
            Test::TcpOut6 => "tcp-out6",
            Test::TcpIn6 => "tcp-in6",
            Test::PubTcp6 => "pub-tcp6",
        }
    }

    /// The metric that stands for the test in the table (n/a when the test failed).
    /// An IPv6 test: only netyard's scenario has IPv6 (the peers' are set up IPv4-only), so
    /// the others skip it rather than fail it.
    fn ipv6(self) -> bool {
        matches!(self, Test::TcpOut6 | Test::TcpIn6 | Test::PubTcp6)
    }

    fn metric(self) -> &'static str {
        match self {
            Test::TcpOut => "tcp_out_gbps",
            Test::TcpIn => "tcp_in_gbps",
            Test::Udp64 => "udp64_out_kpps",
            Test::PubTcp => "pub_tcp_gbps",
            Test::PubCps => "pub_conn_per_s",
            Test::TcpOut6 => "tcp6_out_gbps",
            Test::TcpIn6 => "tcp6_in_gbps",
            Test::PubTcp6 => "pub_tcp6_gbps",
        }
    }
}

const METRICS: &[(Test, MetricDef)] = &[
    (
        Test::TcpOut,
        MetricDef {
            name: "tcp_out_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::TcpOut,
        MetricDef {
            name: "tcp_out_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::TcpIn,
        MetricDef {
            name: "tcp_in_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::TcpIn,
        MetricDef {
            name: "tcp_in_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::Udp64,
        MetricDef {
            name: "udp64_out_kpps",
            unit: "kpps delivered",
            decimals: 1,
            lower_is_better: false,
        },
    ),
    (
        Test::Udp64,
        MetricDef {
            name: "udp64_sent_kpps",
            unit: "kpps sent",
            decimals: 1,
            lower_is_better: false,
        },
    ),
    (
        Test::Udp64,
        MetricDef {
            name: "udp64_fwd_kpps",
            unit: "kpps forwarded",
            decimals: 1,
            lower_is_better: false,
        },
    ),
    (
        Test::Udp64,
        MetricDef {
            name: "udp64_cpu_us_per_pkt",
            unit: "CPU us/pkt",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::PubTcp,
        MetricDef {
            name: "pub_tcp_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::PubTcp,
        MetricDef {
            name: "pub_tcp_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::PubCps,
        MetricDef {
            name: "pub_conn_per_s",
            unit: "conn/s",
            decimals: 0,
            lower_is_better: false,
        },
    ),
    (
        Test::PubCps,
        MetricDef {
            name: "pub_cpu_us_per_conn",
            unit: "CPU us/conn",
            decimals: 1,
            lower_is_better: true,
        },
    ),
    (
        Test::TcpOut6,
        MetricDef {
            name: "tcp6_out_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::TcpOut6,
        MetricDef {
            name: "tcp6_out_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::TcpIn6,
        MetricDef {
            name: "tcp6_in_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::TcpIn6,
        MetricDef {
            name: "tcp6_in_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
    (
        Test::PubTcp6,
        MetricDef {
            name: "pub_tcp6_gbps",
            unit: "Gbit/s",
            decimals: 2,
            lower_is_better: false,
        },
    ),
    (
        Test::PubTcp6,
        MetricDef {
            name: "pub_tcp6_cpu_s_per_gb",
            unit: "CPU s/GB",
            decimals: 2,
            lower_is_better: true,
        },
    ),
];

/// Each IPv6 metric and its IPv4 counterpart, for the IPv6 / IPv4 ratios.
const V6_PAIRS: [(&str, &str); 6] = [
    ("tcp6_out_gbps", "tcp_out_gbps"),
    ("tcp6_out_cpu_s_per_gb", "tcp_out_cpu_s_per_gb"),
    ("tcp6_in_gbps", "tcp_in_gbps"),
    ("tcp6_in_cpu_s_per_gb", "tcp_in_cpu_s_per_gb"),
    ("pub_tcp6_gbps", "pub_tcp_gbps"),
    ("pub_tcp6_cpu_s_per_gb", "pub_tcp_cpu_s_per_gb"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum UdpTool {
    Iperf3,
    Rust,
}

struct Opts {
    base: BaseOpts,
    runs: usize,
    tools: Vec<Tool>,
    tests: Vec<Test>,
    udp_tool: UdpTool,
    /// `--pasta PATH`: a second pasta, measured beside Debian's.
    pasta_new: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo bench --bench egress -- [--seconds N] [--runs N] \
[--only LIST] [--udp-tool iperf3|rust] [--pasta PATH] [--json FILE] [podman]
  --pasta PATH adds a second pasta (pasta-new-1500, pasta-new-65520; --only pasta-new), e.g. the
  current build ../shared/tools/modern-pasta.sh installs, measured beside Debian's.
  --only takes a comma-separated list of tools (netyard, slirp4netns, slirp4netns-1500,
  slirp4netns-65520, pasta, pasta-1500, pasta-65520; podman: rootless Podman's container
  through podman-netyard-1500, podman-netyard-65520, podman-slirp4netns-1500,
  podman-slirp4netns-65520) and/or tests (tcp-out, tcp-in, udp64, pub-tcp, pub-cps, and over
  IPv6 tcp-out6, tcp-in6, pub-tcp6: netyard only); no tool named means all tools, no test
  named means all tests. A bare `podman` is `--only podman`.";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let (mut runs, mut udp_tool) = (1, UdpTool::Iperf3);
    let mut pasta_new = None;
    let (mut tools, mut tests) = (TOOLS.to_vec(), Test::ALL.to_vec());
    let base = parse_args(args, |flag, it| {
        match flag {
            "--runs" => runs = it.positive(flag)?,
            "--udp-tool" => {
                udp_tool = match it.value(flag)?.as_str() {
                    "iperf3" => UdpTool::Iperf3,
                    "rust" => UdpTool::Rust,
                    other => return Err(format!("unknown UDP tool {other:?} (iperf3, rust)")),
                }
            }
            "--pasta" => pasta_new = Some(PathBuf::from(it.value(flag)?)),
            "--only" => {
                (tools, tests) = parse_only(&it.value(flag)?, tools.clone(), tests.clone())?
            }
            // `cargo bench --bench egress -- podman`: the runtime scenarios alone.
            "podman" => (tools, tests) = parse_only("podman", tools.clone(), tests.clone())?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if pasta_new.is_none() {
        tools.retain(|t| t.kind != Kind::PastaNew);
    }
    Ok(Opts {
        base,
        runs,
        tools,
        tests,
        udp_tool,
        pasta_new,
    })
}

/// `--only LIST`: the tools and tests named, each kind in canonical order (netyard first, the
/// peers after it); all of a kind (`tools`, `tests` as they were) when none of it is named.
fn parse_only(
    list: &str,
    tools: Vec<Tool>,
    tests: Vec<Test>,
) -> Result<(Vec<Tool>, Vec<Test>), String> {
    let (mut named_tools, mut named_tests) = (Vec::new(), Vec::new());
    for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let t: Vec<Tool> = TOOLS.into_iter().filter(|t| t.matches(s)).collect();
        if let Some(test) = Test::ALL.into_iter().find(|t| t.name() == s) {
            named_tests.push(test);
        } else if !t.is_empty() {
            named_tools.extend(t);
        } else {
            return Err(format!("--only: unknown tool or test {s:?}"));
        }
    }
    let tools = if named_tools.is_empty() {
        tools
    } else {
        TOOLS
            .into_iter()
            .filter(|t| named_tools.contains(t))
            .collect()
    };
    let tests = if named_tests.is_empty() {
        tests
    } else {
        Test::ALL
            .into_iter()
            .filter(|t| named_tests.contains(t))
            .collect()
    };
    Ok((tools, tests))
}

fn main() {
    common::bench_main("egress", USAGE, child_mode, parse_opts, run_bench);
}

// ---------------------------------------------------------------------------------------------
// netyard's published-port flag, in one place: the CLI is still being built.

/// The `netyard attach` arguments that publish host port `host` to container port `cport`.
fn publish_args(host: u16, cport: u16) -> Vec<String> {
    vec!["-p".to_string(), format!("{host}:{cport}")]
}

// ---------------------------------------------------------------------------------------------
// A lab: host, outside and container namespaces and the tool between them, torn down on drop.

struct Ctx {
    run: Run,
    iperf: PathBuf,
    udp_tool: UdpTool,
    pasta_new: Option<PathBuf>,
}

struct Lab {
    tool: Tool,
    /// Where the tool runs (the "host"), the servers' side, the container.
    h: String,
    o: String,
    c: String,
    dir: PathBuf,
    daemon: Option<Daemon>,
    servers: Servers,
    /// Index in `servers` of slirp4netns or pasta.
    forwarder: Option<(usize, String)>,
    /// Why the published ports are not there, when they are not.
    publish_error: Option<String>,
    /// Why the IPv6 tests cannot run (None: the scenario has IPv6 end to end, netyard's).
    v6_error: Option<String>,
    /// Rootless Podman, in the `podman-*` scenarios (dropped before the namespaces).
    podman: Option<podman::RootlessPodman>,
    namespaces: Namespaces,
}

impl Lab {
    fn new(ctx: &Ctx, tool: Tool, run: usize, tests: &[Test]) -> Result<Lab, String> {
        let base = format!("{NS_PREFIX}{}-{run}{}", ctx.run.pid, tool.tag());
        let dir = ctx.run.dir.join(format!("{run}-{}", tool.tag()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut lab = Lab {
            tool,
            h: format!("{base}-h"),
            o: format!("{base}-o"),
            c: format!("{base}-c"),
            servers: Servers::new(&dir),
            dir,
            daemon: None,
            forwarder: None,
            publish_error: None,
            v6_error: Some(format!("{} has no IPv6 in this bench", tool.name())),
            podman: None,
            namespaces: Namespaces::default(),
        };
        // A Podman container's namespace is Podman's: it is named once the container runs.
        let mut made = vec![lab.h.clone(), lab.o.clone()];
        if !tool.podman() {
            made.push(lab.c.clone());
        }
        for ns in made {
            lab.namespaces.add(&ns)?;
        }
        // host <-> outside: one veth, 198.18.N.1 and .2, MTU 1500. No default route anywhere:
        // the container's traffic can reach the outside namespace and nothing else.
        let (h, o) = (lab.h.clone(), lab.o.clone());
        ip(&[
            "-n", &h, "link", "add", "out0", "type", "veth", "peer", "name", "out0", "netns", &o,
        ])?;
        for (ns, addr) in [(&h, lab.host_ip()), (&o, lab.outside_ip())] {
            ip_addr_up(ns, "out0", &addr)?;
        }
        // The connection-rate client opens many short connections from "outside".
        sysctl(&o, "net.ipv4.tcp_tw_reuse", "1")?;
        sysctl(&o, "net.ipv4.ip_local_port_range", "10000 65000")?;
        match tool.kind {
            Kind::Netyard => {
                let bin = ctx.run.netyard.clone()?;
                lab.setup_netyard(&bin)?;
            }
            Kind::Slirp => lab.setup_slirp()?,
            Kind::Pasta => {
                let bin = which("pasta").ok_or("pasta not installed (apt-get install passt)")?;
                lab.setup_pasta(&bin)?
            }
            Kind::PastaNew => {
                let bin = ctx.pasta_new.clone().ok_or("no --pasta PATH")?;
                lab.setup_pasta(&bin)?
            }
            Kind::PodmanSlirp => lab.setup_podman(None)?,
            Kind::PodmanNetyard => {
                let bin = ctx.run.netyard.clone()?;
                lab.setup_podman(Some(&bin))?
            }
            Kind::FloorRelay => lab.setup_floor_relay(&ctx.run.self_exe)?,
        }
        // The container's servers behind the published ports.
        let c = lab.c.clone();
        if tests.contains(&Test::PubTcp) || tests.contains(&Test::PubTcp6) {
            let port = IPERF_PORT.to_string();
            lab.servers.start(
                &c,
                &ctx.iperf,
                &["-s", "-p", &port],
                None,
                "tcp",
                IPERF_PORT,
            )?;
        }
        if tests.contains(&Test::PubCps) {
            let addr = format!("0.0.0.0:{ACCEPT_PORT}");
            lab.servers.start(
                &c,
                &ctx.run.self_exe,
                &["--accept-server", &addr],
                None,
                "tcp",
                ACCEPT_PORT,
            )?;
        }
        Ok(lab)
    }

    fn host_ip(&self) -> String {
        format!("198.18.{}.1", self.tool.octet())
    }

    fn outside_ip(&self) -> String {
        format!("198.18.{}.2", self.tool.octet())
    }

    /// The host and outside ends of the veth over IPv6 (the documentation prefix; no route
    /// anywhere else).
    fn host_ip6(&self) -> String {
        format!("2001:db8:{}::1", self.tool.octet())
    }

    fn outside_ip6(&self) -> String {
        format!("2001:db8:{}::2", self.tool.octet())
    }

    /// IPv6 on host, outside and the container, and the veth's IPv6 addresses (no duplicate
    /// address detection: usable at once). Before the daemon starts, so it publishes on a
    /// dual-stack socket.
    fn setup_v6_link(&self) -> Result<(), String> {
        for ns in [&self.h, &self.o, &self.c] {
            for key in ["all", "default", "lo"] {
                sysctl(ns, &format!("net.ipv6.conf.{key}.disable_ipv6"), "0")?;
            }
        }
        for (ns, addr) in [(&self.h, self.host_ip6()), (&self.o, self.outside_ip6())] {
            // out0 was made before: `default` did not reach it.
            sysctl(ns, "net.ipv6.conf.out0.disable_ipv6", "0")?;
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "out0",
                "nodad",
            ])?;
        }
        Ok(())
    }

    /// Waits (10 s at most) for the gateway's Router Advertisement to give the container its
    /// IPv6 default route.
    fn wait_container_route6(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run_child(
                Command::new("ip").args(["-n", &self.c, "-6", "route", "show", "default"]),
                Duration::from_secs(5),
                false,
            );
            if out.is_ok_and(|o| o.stdout.contains("default")) {
                return Ok(());
            }
            if interrupted() || Instant::now() >= deadline {
                return Err("the container got no IPv6 default route within 10 s".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// netyard: the daemon in "host", one network (MTU 1500), the container attached with a TAP
    /// (default offloads) and both ports published. When publishing is refused (the flag is not
    /// there yet), the container is attached without it and only the published-port tests fail.
    fn setup_netyard(&mut self, bin: &Path) -> Result<(), String> {
        self.setup_v6_link()?;
        let daemon = Daemon::spawn(
            bin,
            &self.h,
            &self.dir.join("api.sock"),
            &self.dir.join("state"),
            &self.dir.join("daemon.log"),
            &[],
            &[("NETYARD_LOG", "warn"), ("NO_COLOR", "1")],
            "the daemon",
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let d = self.daemon.insert(daemon);
        d.wait_ready(deadline)?;
        let subnet = format!("10.253.{}.0/24", self.tool.octet());
        let subnet6 = format!("fd00:253:{}::/64", self.tool.octet());
        d.cli(&[
            "network",
            "create",
            "bench",
            "--subnet",
            &subnet,
            "--mtu",
            "1500",
            "--ipv6",
            "--subnet6",
            &subnet6,
        ])?;
        let netns = format!("/run/netns/{}", self.c);
        let addr = format!("10.253.{}.2", self.tool.octet());
        let base = [
            "attach", "bench", "--netns", &netns, "--name", "c", "--ip", &addr, "--kind", "tap",
        ];
        let mut publish = publish_args(PUB_IPERF_PORT, IPERF_PORT);
        publish.extend(publish_args(PUB_ACCEPT_PORT, ACCEPT_PORT));
        let mut with_publish: Vec<&str> = base.to_vec();
        with_publish.extend(publish.iter().map(String::as_str));
        if let Err(e) = d.cli(&with_publish) {
            d.check_alive()?;
            self.publish_error = Some(format!("publishing refused: {e}"));
            // The failed attach removed what it made: attach again, without the ports.
            d.cli(&base)?;
        }
        self.v6_error = self.wait_container_route6().err();
        Ok(())
    }

    /// slirp4netns in "host" on the container's namespace (`--configure`: tap0 10.0.2.100/24,
    /// default route via 10.0.2.2), the ports added through its API socket.
    fn setup_slirp(&mut self) -> Result<(), String> {
        let slirp = which("slirp4netns")
            .ok_or("slirp4netns not installed (apt-get install slirp4netns)")?;
        let api = self.dir.join("slirp.sock");
        let apis = api.to_string_lossy().into_owned();
        let mtu = format!("--mtu={}", self.tool.mtu);
        let netns = format!("/run/netns/{}", self.c);
        let h = self.h.clone();
        let idx = self.servers.spawn(
            &h,
            None,
            &slirp,
            &[
                "--configure",
                &mtu,
                "--netns-type=path",
                "--api-socket",
                &apis,
                "--disable-host-loopback",
                &netns,
                "tap0",
            ],
            "slirp4netns.log",
        )?;
        self.forwarder = Some((idx, "slirp4netns.log".into()));
        self.wait_container_addr("tap0")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !api.exists() {
            self.forwarder_alive()?;
            if interrupted() || Instant::now() >= deadline {
                return Err("slirp4netns' API socket did not appear within 10 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
        for (host, guest) in [(PUB_IPERF_PORT, IPERF_PORT), (PUB_ACCEPT_PORT, ACCEPT_PORT)] {
            let req = json!({
                "execute": "add_hostfwd",
                "arguments": {
                    "proto": "tcp", "host_addr": "0.0.0.0", "host_port": host, "guest_port": guest,
                },
            });
            if let Err(e) = slirp_api(&api, &req) {
                self.publish_error = Some(format!("slirp4netns add_hostfwd {host}: {e}"));
                break;
            }
        }
        Ok(())
    }

    /// pasta in "host" on the container's namespace: the container gets a copy of host's
    /// address (198.18.N.1/24) and a default route to a gateway address nobody has (mapping the
    /// gateway to the host is off), the ports with `-t`, nothing forwarded back (`-T/-U none`).
    fn setup_pasta(&mut self, pasta: &Path) -> Result<(), String> {
        let mtu = self.tool.mtu.to_string();
        let gw = format!("198.18.{}.254", self.tool.octet());
        let netns = format!("/run/netns/{}", self.c);
        let t1 = format!("{PUB_IPERF_PORT}:{IPERF_PORT}");
        let t2 = format!("{PUB_ACCEPT_PORT}:{ACCEPT_PORT}");
        let h = self.h.clone();
        let idx = self.servers.spawn(
            &h,
            None,
            pasta,
            &[
                "--foreground",
                // As root pasta would drop to "nobody", which cannot enter the namespace.
                "--runas",
                "0",
                "-4",
                "--interface",
                "out0",
                "--gateway",
                &gw,
                "--no-map-gw",
                "--config-net",
                "--netns",
                &netns,
                "--mtu",
                &mtu,
                "-t",
                &t1,
                "-t",
                &t2,
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
            ],
            "pasta.log",
        )?;
        self.forwarder = Some((idx, "pasta.log".into()));
        self.wait_container_addr("out0")
    }

    /// Rootless Podman in "host" runs the container (`podman run -d --network
    /// slirp4netns:mtu=M,port_handler=slirp4netns -p ...`), its helper Podman's own slirp4netns
    /// or netyard's front (`netyard`: `--network-cmd-path` to a link named slirp4netns). The
    /// ports go through the helper's API socket (`port_handler=slirp4netns`): Podman's default
    /// handler, rootlessport, connects from inside the container's namespace and would leave
    /// the helper out of the published-port path. The container's namespace is then named
    /// (`ip netns attach`) for the load, which runs in it as in the other scenarios.
    fn setup_podman(&mut self, netyard: Option<&Path>) -> Result<(), String> {
        let p = podman::RootlessPodman::start(&self.dir.join("p"), &self.h, netyard)?;
        let p = self.podman.insert(p);
        let network = format!("slirp4netns:mtu={},port_handler=slirp4netns", self.tool.mtu);
        let mut publish = Vec::new();
        for (host, guest) in [(PUB_IPERF_PORT, IPERF_PORT), (PUB_ACCEPT_PORT, ACCEPT_PORT)] {
            publish.push(format!("{host}:{guest}"));
        }
        let pid = p.run_idle("c", &network, &publish)?;
        let c = self.c.clone();
        self.namespaces.attach(&c, pid)?;
        self.wait_container_addr("tap0")
    }

    /// CPU seconds (user + system) the tool's processes have used so far: the daemon, the
    /// forwarder, or the Podman container's helper (every live slirp4netns process in
    /// Podman's PID namespace).
    /// The floor relay's container link: a veth, the kernel's TCP on both sides of the relay.
    fn floor_host_ip(&self) -> String {
        format!("10.250.{}.1", self.tool.octet())
    }

    fn floor_container_ip(&self) -> String {
        format!("10.250.{}.2", self.tool.octet())
    }

    /// Where the container's egress tests connect: the outside's server, or for the floor the
    /// relay in "host" (it has no interception: the kernel routes nothing for it).
    fn egress_server(&self) -> String {
        match self.tool.kind {
            Kind::FloorRelay => self.floor_host_ip(),
            _ => self.outside_ip(),
        }
    }

    /// The floor: the container on a veth to "host" (MTU 1500, the veth's default offloads:
    /// TSO super-packets cross as they do a TAP with netyard's offloads), and the bench's own
    /// relay in "host" (`--floor-relay`): the egress port to the outside's server and the two
    /// published ports to the container.
    fn setup_floor_relay(&mut self, exe: &Path) -> Result<(), String> {
        let (h, c) = (self.h.clone(), self.c.clone());
        ip(&[
            "-n", &h, "link", "add", "cf0", "type", "veth", "peer", "name", "eth0", "netns", &c,
        ])?;
        ip_addr_up(&h, "cf0", &self.floor_host_ip())?;
        ip_addr_up(&c, "eth0", &self.floor_container_ip())?;
        let maps = [
            (
                self.floor_host_ip(),
                IPERF_PORT,
                self.outside_ip(),
                IPERF_PORT,
            ),
            (
                self.host_ip(),
                PUB_IPERF_PORT,
                self.floor_container_ip(),
                IPERF_PORT,
            ),
            (
                self.host_ip(),
                PUB_ACCEPT_PORT,
                self.floor_container_ip(),
                ACCEPT_PORT,
            ),
        ]
        .map(|(l, lp, t, tp)| format!("{l}:{lp}={t}:{tp}"));
        let mut args = vec!["--floor-relay"];
        args.extend(maps.iter().map(String::as_str));
        // The last listener is bound last: once it listens, all do.
        let idx = self
            .servers
            .start(&h, exe, &args, None, "tcp", PUB_ACCEPT_PORT)?;
        let log = self.servers.server_log(exe, PUB_ACCEPT_PORT);
        let log = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.forwarder = Some((idx, log));
        Ok(())
    }

    fn helper_cpu(&self) -> Option<f64> {
        let mut pids = Vec::new();
        if let Some(d) = &self.daemon {
            pids.push(d.child.id());
        }
        if let Some((idx, _)) = &self.forwarder {
            pids.extend(self.servers.pid(*idx));
        }
        if let Some(p) = &self.podman {
            pids.extend(p.helper_pids());
        }
        if pids.is_empty() {
            return None;
        }
        cpu_seconds_of(&pids)
    }

    fn forwarder_alive(&mut self) -> Result<(), String> {
        let Some((idx, log)) = self.forwarder.clone() else {
            return Ok(());
        };
        let path = self.servers.log_path(&log);
        if let Some(Ok(Some(st))) = self.servers.child(idx).map(|c| c.try_wait()) {
            let text = fs::read_to_string(path).unwrap_or_default();
            let text: String = text
                .lines()
                .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(format!(
                "{} exited ({st}): {}",
                self.tool.name(),
                last_lines(&text, 3)
            ));
        }
        Ok(())
    }

    /// Waits until the tool has configured the container's interface `dev` (an IPv4 address).
    fn wait_container_addr(&mut self, dev: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.forwarder_alive()?;
            if interrupted() {
                return Err("interrupted".into());
            }
            let out = run_child(
                Command::new("ip").args(["-n", &self.c, "-j", "-4", "addr", "show", "dev", dev]),
                Duration::from_secs(5),
                false,
            );
            let has_addr = out
                .ok()
                .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
                .and_then(|v| v[0]["addr_info"].as_array().map(|a| !a.is_empty()))
                .unwrap_or(false);
            if has_addr {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not configure {dev} in the container within 10 s",
                    self.tool.name()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Err when the daemon or the forwarder died: nothing after that would measure anything.
    fn alive(&mut self) -> Result<(), String> {
        if let Some(d) = self.daemon.as_mut() {
            d.check_alive()?;
        }
        self.forwarder_alive()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.stop_all();
        // Its processes live in "host": gone before the namespaces' teardown kills them.
        drop(self.podman.take());
        if let Some(mut d) = self.daemon.take() {
            if !d.stop(Duration::from_secs(10)) {
                eprintln!(
                    "egress bench: {}: the daemon did not exit within 10 s of SIGTERM (killed)",
                    self.tool.name()
                );
            }
        }
        self.namespaces.delete_all();
    }
}

/// `sysctl -w KEY=VALUE` inside a namespace (per-namespace keys only).
fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let script = format!("echo '{value}' > {path}");
    run_setup(
        Command::new("ip").args(["netns", "exec", ns, "sh", "-c", &script]),
        Duration::from_secs(10),
        || format!("setting {key} in {ns}"),
    )
}

/// One request on slirp4netns' API socket; its answer, or the error it names.
fn slirp_api(sock: &Path, req: &Value) -> Result<Value, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connecting: {e}"))?;
    let t = Some(Duration::from_secs(5));
    s.set_read_timeout(t).map_err(|e| e.to_string())?;
    s.set_write_timeout(t).map_err(|e| e.to_string())?;
    s.write_all(req.to_string().as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let v: Value =
        serde_json::from_str(&buf).map_err(|_| format!("unexpected answer {:?}", buf.trim()))?;
    if let Some(e) = v.get("error") {
        return Err(format!("error {e}"));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Measurements.

type Figures = Vec<(&'static str, f64)>;

/// iperf3 client options that keep a broken path from hanging a test (`--rcv-timeout` is
/// only accepted with -R; the run's own timeout covers the rest).
const IPERF_TIMEOUTS: [&str; 2] = ["--connect-timeout", "5000"];
const IPERF_RCV_TIMEOUT: [&str; 2] = ["--rcv-timeout", "5000"];

/// A one-off iperf3 server in "outside" (a fresh one per test: a failed test cannot leave it
/// busy), and the client in the container.
fn egress_iperf(lab: &mut Lab, ctx: &Ctx, server: &str, extra: &[&str]) -> Result<Value, String> {
    let o = lab.o.clone();
    let port = IPERF_PORT.to_string();
    let idx = lab.servers.start(
        &o,
        &ctx.iperf,
        &["-s", "-1", "-p", &port],
        None,
        "tcp",
        IPERF_PORT,
    )?;
    let mut args: Vec<&str> = IPERF_TIMEOUTS.to_vec();
    args.extend_from_slice(extra);
    let res = iperf_client(
        &lab.c,
        &ctx.iperf,
        server,
        IPERF_PORT,
        ctx.run.seconds,
        &args,
    );
    lab.servers.stop(idx);
    res
}

fn tcp_figures(
    v: &Value,
    metric: &'static str,
    notes: &mut Vec<String>,
) -> Result<Figures, String> {
    let t = tcp_run(v)?;
    if t.bps <= 0.0 {
        return Err("no data arrived".into());
    }
    notes.extend(t.stall);
    Ok(vec![(metric, t.bps / 1e9)])
}

/// Adds `metric`, the tool's CPU seconds (user + system, from `cpu0` to now) per GB moved, to
/// a throughput figure `f` (Gbit/s over the test's seconds): the cost of the path in the tool's
/// own processes, which the machine's other load skews less than it skews throughput.
fn with_cpu(
    lab: &Lab,
    cpu0: Option<f64>,
    mut f: Figures,
    metric: &'static str,
    ctx: &Ctx,
) -> Figures {
    let gb = f.first().map(|x| x.1 * ctx.run.seconds as f64 / 8.0);
    if let (Some(a), Some(b), Some(gb)) = (cpu0, lab.helper_cpu(), gb) {
        if gb > 0.0 && b >= a {
            f.push((metric, (b - a) / gb));
        }
    }
    f
}

fn measure(
    lab: &mut Lab,
    ctx: &Ctx,
    test: Test,
    notes: &mut Vec<String>,
) -> Result<Figures, String> {
    match test {
        Test::TcpOut => {
            let cpu0 = lab.helper_cpu();
            let server = lab.egress_server();
            let v = egress_iperf(lab, ctx, &server, &[])?;
            let f = tcp_figures(&v, "tcp_out_gbps", notes)?;
            Ok(with_cpu(lab, cpu0, f, "tcp_out_cpu_s_per_gb", ctx))
        }
        Test::TcpIn => {
            let cpu0 = lab.helper_cpu();
            let server = lab.egress_server();
            let v = egress_iperf(
                lab,
                ctx,
                &server,
                &["-R", IPERF_RCV_TIMEOUT[0], IPERF_RCV_TIMEOUT[1]],
            )?;
            let f = tcp_figures(&v, "tcp_in_gbps", notes)?;
            Ok(with_cpu(lab, cpu0, f, "tcp_in_cpu_s_per_gb", ctx))
        }
        Test::TcpOut6 | Test::TcpIn6 => {
            if let Some(e) = &lab.v6_error {
                return Err(e.clone());
            }
            let (extra, metric, cpu): (&[&str], _, _) = if test == Test::TcpOut6 {
                (&[], "tcp6_out_gbps", "tcp6_out_cpu_s_per_gb")
            } else {
                (
                    &["-R", IPERF_RCV_TIMEOUT[0], IPERF_RCV_TIMEOUT[1]],
                    "tcp6_in_gbps",
                    "tcp6_in_cpu_s_per_gb",
                )
            };
            let cpu0 = lab.helper_cpu();
            let server = lab.outside_ip6();
            let v = egress_iperf(lab, ctx, &server, extra)?;
            let f = tcp_figures(&v, metric, notes)?;
            Ok(with_cpu(lab, cpu0, f, cpu, ctx))
        }
        Test::PubTcp6 => {
            if let Some(e) = lab.v6_error.as_ref().or(lab.publish_error.as_ref()) {
                return Err(e.clone());
            }
            let cpu0 = lab.helper_cpu();
            let v = iperf_client(
                &lab.o,
                &ctx.iperf,
                &lab.host_ip6(),
                PUB_IPERF_PORT,
                ctx.run.seconds,
                &IPERF_TIMEOUTS,
            )?;
            let f = tcp_figures(&v, "pub_tcp6_gbps", notes)?;
            Ok(with_cpu(lab, cpu0, f, "pub_tcp6_cpu_s_per_gb", ctx))
        }
        Test::PubTcp => {
            if let Some(e) = &lab.publish_error {
                return Err(e.clone());
            }
            let cpu0 = lab.helper_cpu();
            let v = iperf_client(
                &lab.o,
                &ctx.iperf,
                &lab.host_ip(),
                PUB_IPERF_PORT,
                ctx.run.seconds,
                &IPERF_TIMEOUTS,
            )?;
            let f = tcp_figures(&v, "pub_tcp_gbps", notes)?;
            Ok(with_cpu(lab, cpu0, f, "pub_tcp_cpu_s_per_gb", ctx))
        }
        Test::Udp64 => {
            if lab.tool.kind == Kind::FloorRelay {
                return Err("the floor relays TCP only".into());
            }
            let cpu0 = lab.helper_cpu();
            let out0 = udp_datagrams_in(&lab.o);
            let mut f = match ctx.udp_tool {
                UdpTool::Iperf3 => udp_iperf(lab, ctx)?,
                UdpTool::Rust => udp_rust(lab, ctx)?,
            };
            // What the tool put on the wire towards outside (before the receiver's own
            // losses), and its CPU per such datagram: delivered alone would charge the tool
            // for datagrams the receiving iperf3 could not take. Counted at outside's UDP
            // layer, not as out0's packets: a UDP GSO send crosses the veth as one packet.
            if let (Some(a), Some(b)) = (out0, udp_datagrams_in(&lab.o)) {
                let pkts = b.saturating_sub(a) as f64;
                f.push(("udp64_fwd_kpps", pkts / ctx.run.seconds as f64 / 1e3));
                if let (Some(c0), Some(c1)) = (cpu0, lab.helper_cpu()) {
                    if pkts > 0.0 && c1 >= c0 {
                        f.push(("udp64_cpu_us_per_pkt", (c1 - c0) * 1e6 / pkts));
                    }
                }
            }
            Ok(f)
        }
        Test::PubCps => {
            let cpu0 = lab.helper_cpu();
            let f = pub_cps(lab, ctx, notes)?;
            Ok(with_cpu_per(lab, cpu0, f, "pub_cpu_us_per_conn", 1.0, ctx))
        }
    }
}

/// The tool's CPU time during a test per unit of its first figure (a rate), in
/// microseconds: `scale` units per figure unit (1e3 for kpps).
fn with_cpu_per(
    lab: &Lab,
    cpu0: Option<f64>,
    mut f: Figures,
    metric: &'static str,
    scale: f64,
    ctx: &Ctx,
) -> Figures {
    let units = f.first().map(|x| x.1 * scale * ctx.run.seconds as f64);
    if let (Some(a), Some(b), Some(n)) = (cpu0, lab.helper_cpu(), units) {
        if n > 0.0 && b >= a {
            f.push((metric, (b - a) * 1e6 / n));
        }
    }
    f
}

/// UDP datagrams that reached `ns`'s UDP layer so far, each segment of a GSO packet counted
/// (`/proc/net/snmp`: InDatagrams + NoPorts + InErrors, the last including the receive
/// buffer's drops).
fn udp_datagrams_in(ns: &str) -> Option<u64> {
    let out = run_timed(
        Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]),
        Duration::from_secs(10),
    )
    .ok()?;
    let mut udp = out.stdout.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let mut total = 0;
    for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
        if matches!(n, "InDatagrams" | "NoPorts" | "InErrors") {
            total += v.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// 64-byte UDP through iperf3: delivered (and sent) kpps.
fn udp_iperf(lab: &mut Lab, ctx: &Ctx) -> Result<Figures, String> {
    let server = lab.outside_ip();
    let v = egress_iperf(lab, ctx, &server, &["-u", "-l", "64", "-b", "0"])?;
    let u = udp_run(&v, ctx.run.seconds)?;
    if u.delivered_pps <= 0.0 {
        return Err("no datagram arrived".into());
    }
    let mut f = vec![("udp64_out_kpps", u.delivered_pps / 1e3)];
    f.extend(u.sent_pps.map(|s| ("udp64_sent_kpps", s / 1e3)));
    Ok(f)
}

/// Published connections per second: the bench's connect loop in outside, one at a time.
fn pub_cps(lab: &mut Lab, ctx: &Ctx, notes: &mut Vec<String>) -> Result<Figures, String> {
    if let Some(e) = &lab.publish_error {
        return Err(e.clone());
    }
    let addr = format!("{}:{PUB_ACCEPT_PORT}", lab.host_ip());
    let secs = ctx.run.seconds.to_string();
    let out = run_timed(
        &mut nsexec(
            &lab.o,
            None,
            &ctx.run.self_exe,
            &["--connect-client", &addr, &secs],
        ),
        Duration::from_secs(ctx.run.seconds + 30),
    )?;
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("cps "))
        .ok_or_else(|| {
            format!(
                "the connect loop printed nothing: {}",
                first_line(&out.stderr)
            )
        })?
        .to_string();
    let get = |k: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    let (ok, failed, secs) = (
        get("ok=").unwrap_or(0.0),
        get("failed=").unwrap_or(0.0),
        get("seconds=")
            .filter(|&s| s > 0.0)
            .unwrap_or(ctx.run.seconds as f64),
    );
    let first_error = line.split_once("first_error=").map(|x| x.1).unwrap_or("");
    if ok == 0.0 {
        return Err(format!("no connection completed: {first_error}"));
    }
    if failed > 0.0 {
        notes.push(format!(
            "{failed} of {} connections failed ({first_error})",
            ok + failed
        ));
    }
    Ok(vec![("pub_conn_per_s", ok / secs)])
}

/// UDP 64-byte datagrams with the bench's own sender (container) and sink (outside): no TCP
/// control connection, unlike iperf3.
fn udp_rust(lab: &mut Lab, ctx: &Ctx) -> Result<Figures, String> {
    let o = lab.o.clone();
    let secs = ctx.run.seconds.to_string();
    let sink_addr = format!("0.0.0.0:{UDP_SINK_PORT}");
    let idx = lab.servers.start(
        &o,
        &ctx.run.self_exe,
        &["--udp-sink", &sink_addr, &secs],
        None,
        "udp",
        UDP_SINK_PORT,
    )?;
    let dst = format!("{}:{UDP_SINK_PORT}", lab.outside_ip());
    let sent = run_timed(
        &mut nsexec(
            &lab.c,
            None,
            &ctx.run.self_exe,
            &["--udp-flood", &dst, &secs],
        ),
        Duration::from_secs(ctx.run.seconds + 30),
    );
    // The sink prints when it has seen 1 s of silence after the flood.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let done = matches!(
            lab.servers.child(idx).map(|c| c.try_wait()),
            Some(Ok(Some(_)))
        );
        if done || Instant::now() >= deadline || interrupted() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    lab.servers.stop(idx);
    let sent = sent?;
    let log = fs::read_to_string(lab.servers.server_log(&ctx.run.self_exe, UDP_SINK_PORT))
        .unwrap_or_default();
    let num = |text: &str, prefix: &str, k: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))?
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    let received = num(&log, "udp-sink ", "packets=").unwrap_or(0.0);
    let rsecs = num(&log, "udp-sink ", "seconds=").filter(|&s| s > 0.0);
    if received == 0.0 {
        return Err(format!(
            "no datagram arrived (sender: {})",
            first_line(&format!("{}\n{}", sent.stdout, sent.stderr))
        ));
    }
    let ssecs = num(&sent.stdout, "udp-flood ", "seconds=").filter(|&s| s > 0.0);
    let spkts = num(&sent.stdout, "udp-flood ", "sent=");
    let mut f = vec![(
        "udp64_out_kpps",
        received / rsecs.or(ssecs).unwrap_or(ctx.run.seconds as f64) / 1e3,
    )];
    if let (Some(p), Some(s)) = (spkts, ssecs) {
        f.push(("udp64_sent_kpps", p / s / 1e3));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Hidden child modes: the connection-rate server and client, the UDP flood and sink.

fn child_mode(args: &[String]) -> Option<i32> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let secs = || arg(2).parse::<u64>().unwrap_or(5);
    match arg(0) {
        "--accept-server" => Some(accept_server(arg(1))),
        "--connect-client" => Some(connect_client(arg(1), secs())),
        "--udp-flood" => Some(udp_flood(arg(1), secs())),
        "--udp-sink" => Some(udp_sink(arg(1), secs())),
        "--floor-relay" => Some(floor_relay(&args[1..])),
        _ => None,
    }
}

/// Accepts connections one at a time: reads the client's byte, answers one byte, closes. (The
/// client speaks first: pasta 2023-03 connects to the container only once the client sent
/// something, so a server that spoke first would wait forever.)
fn accept_server(addr: &str) -> i32 {
    let l = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("accept-server: bind {addr}: {e}");
            return 1;
        }
    };
    loop {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut b = [0u8; 1];
            if let Ok(1) = s.read(&mut b) {
                let _ = s.write_all(b"!");
            }
        }
    }
}

/// Connects, sends a byte, reads the server's byte, closes; again for `seconds`, one at a time.
fn connect_client(addr: &str, seconds: u64) -> i32 {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("connect-client: bad address {addr}");
        return 1;
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut ok, mut failed, mut consecutive) = (0u64, 0u64, 0u32);
    let mut first_error = String::new();
    let timeout = Duration::from_secs(2);
    while Instant::now() < end {
        let r = TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
            s.set_read_timeout(Some(timeout))?;
            s.write_all(b"?")?;
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(1) => Ok(()),
                Ok(_) => Err(std::io::Error::other("closed before the server's byte")),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(
                    std::io::Error::other("connected, but no byte from the server within 2 s"),
                ),
                Err(e) => Err(e),
            }
        });
        match r {
            Ok(()) => {
                ok += 1;
                consecutive = 0;
            }
            Err(e) => {
                failed += 1;
                consecutive += 1;
                if first_error.is_empty() {
                    first_error = e.to_string();
                }
                // Nothing works: stop early rather than spin for the whole test.
                if consecutive >= 20 && ok == 0 {
                    break;
                }
            }
        }
    }
    println!(
        "cps ok={ok} failed={failed} seconds={:.3} first_error={first_error}",
        start.elapsed().as_secs_f64()
    );
    0
}

/// The floor relay: for each `LISTEN=TARGET` (socket addresses), accepts connections and
/// relays each to a new connection to TARGET, a thread per direction doing `read` then
/// `write_all` through a 256 KiB buffer until EOF, then a half-close. No event loop, no
/// userspace TCP: the least a relaying helper does per byte.
fn floor_relay(maps: &[String]) -> i32 {
    let mut listeners = Vec::new();
    for m in maps {
        let parsed = m.split_once('=').and_then(|(l, t)| {
            Some((l.parse::<SocketAddr>().ok()?, t.parse::<SocketAddr>().ok()?))
        });
        let Some((listen, target)) = parsed else {
            eprintln!("floor-relay: bad mapping {m} (LISTEN=TARGET, socket addresses)");
            return 1;
        };
        match TcpListener::bind(listen) {
            Ok(l) => listeners.push((l, target)),
            Err(e) => {
                eprintln!("floor-relay: bind {listen}: {e}");
                return 1;
            }
        }
    }
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(l, target)| thread::spawn(move || floor_accept(&l, target)))
        .collect();
    for t in accepting {
        let _ = t.join();
    }
    0
}

fn floor_accept(l: &TcpListener, target: SocketAddr) {
    for client in l.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
        }
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        thread::spawn(move || floor_copy(client, server));
        thread::spawn(move || floor_copy(s2, c2));
    }
}

fn floor_copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Sends 64-byte datagrams to `addr` as fast as it can for `seconds`.
fn udp_flood(addr: &str, seconds: u64) -> i32 {
    let Some(sock) = udp_connected("udp-flood", addr) else {
        return 1;
    };
    let msg = [0u8; 64];
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut sent, mut errors) = (0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..64 {
            match sock.send(&msg) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
    }
    println!(
        "udp-flood sent={sent} errors={errors} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    0
}

/// Counts datagrams from the first one until 1 s of silence (or `seconds` + 10 s); prints the
/// count and the time from the first to the last.
fn udp_sink(addr: &str, seconds: u64) -> i32 {
    let Some(sock) = udp_bound("udp-sink", addr) else {
        return 1;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let hard_end = start + Duration::from_secs(seconds + 10);
    let mut buf = [0u8; 2048];
    let (mut n, mut first, mut last) = (0u64, None::<Instant>, Instant::now());
    while Instant::now() < hard_end {
        match sock.recv(&mut buf) {
            Ok(_) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                n += 1;
            }
            Err(_) => {
                if first.is_some() && last.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    println!("udp-sink packets={n} seconds={secs:.3}");
    0
}

// ---------------------------------------------------------------------------------------------
// The run: tools in turn, `runs` times, fresh namespaces each time; medians and ratios.

struct Outcome {
    figures: Figures,
    /// Test -> why it failed.
    errors: Vec<(Test, String)>,
    notes: Vec<String>,
}

fn run_tool(ctx: &Ctx, tool: Tool, run: usize, tests: &[Test]) -> Result<Outcome, String> {
    let mut lab = Lab::new(ctx, tool, run, tests).map_err(|e| format!("setup failed: {e}"))?;
    let mut o = Outcome {
        figures: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
    };
    for &test in tests {
        if interrupted() {
            return Err("interrupted".into());
        }
        if test.ipv6() && tool.kind != Kind::Netyard {
            continue;
        }
        match measure(&mut lab, ctx, test, &mut o.notes) {
            Ok(f) => o.figures.extend(f),
            Err(e) => {
                if interrupted() {
                    return Err("interrupted".into());
                }
                eprintln!("  {} {}: {e}", tool.name(), test.name());
                o.errors.push((test, e));
            }
        }
        // A dead daemon or forwarder fails every test after it.
        if let Err(e) = lab.alive() {
            eprintln!("  {}: {e}", tool.name());
            for &t in tests.iter().skip_while(|&&t| t != test).skip(1) {
                o.errors.push((t, e.clone()));
            }
            break;
        }
    }
    Ok(o)
}

/// The runtime scenarios: each `podman-netyard-M` divided by each `podman-slirp4netns-M`, then
/// the targets (netyard's front at MTU 1500 against Podman's default, slirp4netns at
/// 65520: at least 3x out, 2x in), each said met or not. Pushes the ratios to `ratios`.
fn podman_ratios(
    opts: &Opts,
    samples: &[(String, &'static str, f64)],
    metrics: &[&(Test, MetricDef)],
    ratios: &mut Vec<Value>,
) {
    let named = |k: Kind| -> Vec<String> {
        opts.tools
            .iter()
            .filter(|t| t.kind == k)
            .map(|t| t.name())
            .collect()
    };
    let (ours, theirs) = (named(Kind::PodmanNetyard), named(Kind::PodmanSlirp));
    if ours.is_empty() || theirs.is_empty() {
        return;
    }
    let w0 = 21;
    let cw = 26;
    println!(
        "# rootless Podman: netyard's front / Podman's slirp4netns, same run (above 1.00x: \
         netyard is better; for CPU costs, the peer's over netyard's)"
    );
    let mut header = format!("{:<w0$} {:<22}", "metric", "");
    for t in &theirs {
        header.push_str(&format!(" {:>cw$}", format!("vs {t}")));
    }
    println!("{}", header.trim_end());
    let med = |tool: &String, m: &str| median_of(samples, tool, m).map(|x| x.0);
    for (_, m) in metrics {
        for o in &ours {
            let mut line = format!("{:<w0$} {:<22}", m.name, o);
            for t in &theirs {
                let cell = match (med(o, m.name), med(t, m.name)) {
                    (Some(v), Some(b)) if b > 0.0 && v > 0.0 => {
                        // Above 1.00x: netyard is better (for a cost, the peer's over ours).
                        let r = if m.lower_is_better { b / v } else { v / b };
                        ratios.push(json!({"metric": m.name, "tool": o, "peer": t, "ratio": r}));
                        format!("{r:.2}x")
                    }
                    _ => "n/a".to_string(),
                };
                line.push_str(&format!(" {cell:>cw$}"));
            }
            println!("{}", line.trim_end());
        }
    }
    let (o, t) = (
        "podman-netyard-1500".to_string(),
        "podman-slirp4netns-65520".to_string(),
    );
    for (metric, target) in [("tcp_out_gbps", 3.0), ("tcp_in_gbps", 2.0)] {
        let line = match (med(&o, metric), med(&t, metric)) {
            (Some(v), Some(b)) if b > 0.0 => {
                let r = v / b;
                let verdict = if r >= target { "met" } else { "NOT met" };
                format!("{r:.2}x (target {target:.0}x: {verdict})")
            }
            _ => "n/a (both scenarios needed)".to_string(),
        };
        println!("# target: {o} / {t} {metric}: {line}");
    }
}

/// The floor relay against slirp4netns at 65520 (what the least a relay does reaches against
/// the issue 12 targets' peer) and each netyard scenario against the floor (netyard's own
/// overhead), for the TCP throughputs; a line for each pair that has both medians. Not for
/// connections per second: the floor starts two threads per connection, a floor for bytes only.
fn floor_ratios(samples: &[(String, &'static str, f64)], ratios: &mut Vec<Value>) {
    let floor = "floor-relay";
    let med = |tool: &str, m: &str| median_of(samples, &tool.to_string(), m).map(|x| x.0);
    for metric in ["tcp_out_gbps", "tcp_in_gbps", "pub_tcp_gbps"] {
        let pairs = [
            (floor, "slirp4netns-65520"),
            (floor, "podman-slirp4netns-65520"),
            ("netyard", floor),
            ("podman-netyard-1500", floor),
        ];
        for (a, b) in pairs {
            if let (Some(x), Some(y)) = (med(a, metric), med(b, metric)) {
                if y > 0.0 {
                    let r = x / y;
                    ratios.push(json!({"metric": metric, "tool": a, "peer": b, "ratio": r}));
                    println!("# floor: {a} / {b} {metric}: {r:.2}x");
                }
            }
        }
    }
}

fn package_version(package: &str) -> String {
    run_child(
        Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]),
        Duration::from_secs(10),
        false,
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| o.stdout.trim().to_string())
    .unwrap_or_default()
}

fn tool_version(kind: Kind) -> String {
    let package = match kind {
        Kind::Netyard | Kind::PodmanNetyard | Kind::FloorRelay => return String::new(),
        Kind::Slirp | Kind::PodmanSlirp => "slirp4netns",
        Kind::Pasta => "passt",
        // modern-pasta.sh writes the package's version beside the binary.
        Kind::PastaNew => return String::new(),
    };
    run_child(
        Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]),
        Duration::from_secs(10),
        false,
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| o.stdout.trim().to_string())
    .unwrap_or_default()
}

fn run_bench(opts: &Opts) -> i32 {
    if !can_make_namespaces() {
        return 1;
    }
    let Some(iperf) = which("iperf3") else {
        eprintln!("egress bench: iperf3 not found (apt-get install iperf3); nothing was run");
        return 1;
    };
    let Some(dir_guard) = scratch_dir(NS_PREFIX, TMP_PREFIX) else {
        return 1;
    };
    let needs_netyard = opts
        .tools
        .iter()
        .any(|t| matches!(t.kind, Kind::Netyard | Kind::PodmanNetyard));
    let netyard = netyard_if(needs_netyard);
    match (&netyard, needs_netyard) {
        (Ok(bin), _) => eprintln!("egress bench: netyard binary {}", bin.display()),
        (Err(e), true) => eprintln!("egress bench: the netyard scenario will fail: {e}"),
        _ => {}
    }
    let ctx = Ctx {
        run: Run::new(&dir_guard, opts.base.seconds, netyard),
        iperf,
        udp_tool: opts.udp_tool,
        pasta_new: opts.pasta_new.clone(),
    };

    let mut samples: Vec<(String, &'static str, f64)> = Vec::new();
    // (tool, test) -> errors, in run order.
    let mut failures: Vec<(String, Test, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    each_run(
        opts.runs,
        &opts.tools,
        Tool::name,
        |tool, run, t0| match run_tool(&ctx, tool, run, &opts.tests) {
            Ok(o) => {
                print_summary(&tool.name(), t0, &o.figures);
                samples.extend(o.figures.iter().map(|&(m, v)| (tool.name(), m, v)));
                for (t, e) in o.errors {
                    failures.push((tool.name(), t, format!("run {run}: {e}")));
                }
                keep_notes(&tool.name(), run, o.notes, &mut notes);
            }
            Err(e) => {
                eprintln!("  {}: {e}", tool.name());
                if !interrupted() {
                    for &t in &opts.tests {
                        failures.push((tool.name(), t, format!("run {run}: {e}")));
                    }
                }
            }
        },
    );
    drop(dir_guard);

    let doc = report(opts, &samples, &failures, &notes);
    finish(opts.base.json.as_deref(), &doc, !failures.is_empty())
}

/// Prints the table (every figure; n/a with a numbered reason where a test failed) and the
/// ratios of netyard to each peer; returns the same as JSON.
fn report(
    opts: &Opts,
    samples: &[(String, &'static str, f64)],
    failures: &[(String, Test, String)],
    notes: &[String],
) -> Value {
    let udp = match opts.udp_tool {
        UdpTool::Iperf3 => "iperf3 -u -l 64 -b 0",
        UdpTool::Rust => "the bench's own 64-byte UDP flood and sink",
    };
    println!(
        "# netyard egress bench: {} s per test, median of {} run(s); TCP: iperf3, one stream \
         (tcp_in = -R); UDP: {udp}, delivered at the receiver; conn/s: connect, 1 byte each way, \
         close, one at a time, through the published port",
        opts.base.seconds, opts.runs
    );
    let mut versions: Vec<String> = [Kind::Slirp, Kind::Pasta]
        .into_iter()
        .filter(|k| {
            opts.tools
                .iter()
                .any(|t| t.kind == *k || (*k == Kind::Slirp && t.kind == Kind::PodmanSlirp))
        })
        .map(|k| {
            let name = if k == Kind::Slirp {
                "slirp4netns"
            } else {
                "passt"
            };
            format!("{name} {}", tool_version(k))
        })
        .collect();
    if let Some(p) = opts
        .pasta_new
        .as_ref()
        .filter(|_| opts.tools.iter().any(|t| t.kind == Kind::PastaNew))
    {
        let v = p
            .parent()
            .and_then(|d| fs::read_to_string(d.join("VERSION")).ok())
            .unwrap_or_else(|| "(version unknown)".into());
        versions.push(format!("pasta-new {} ({})", v.trim(), p.display()));
    }
    if opts.tools.iter().any(|t| t.podman()) {
        versions.push(format!("podman {}", package_version("podman")));
    }
    if !versions.is_empty() {
        println!("# peers: {}", versions.join(", "));
    }
    let metrics: Vec<&(Test, MetricDef)> = METRICS
        .iter()
        .filter(|(t, _)| opts.tests.contains(t))
        .collect();
    let names: Vec<String> = opts.tools.iter().map(|t| t.name()).collect();
    // n/a reasons, numbered in order of appearance: (tool, test) -> number.
    let mut reasons: Vec<(String, Test, String)> = Vec::new();
    let mut reason_no = |tool: &str, test: Test| -> Option<usize> {
        if let Some(i) = reasons.iter().position(|r| r.0 == tool && r.1 == test) {
            return Some(i + 1);
        }
        let errs: Vec<&str> = failures
            .iter()
            .filter(|f| f.0 == tool && f.1 == test)
            .map(|f| f.2.as_str())
            .collect();
        if errs.is_empty() {
            return None;
        }
        reasons.push((tool.to_string(), test, errs.join("; ")));
        Some(reasons.len())
    };
    let mut results = Vec::new();
    let w0 = 21;
    let cw = names.iter().map(|n| n.len()).max().unwrap_or(8).max(10);
    let mut header = format!("{:<w0$} {:<15}", "metric", "unit");
    for n in &names {
        header.push_str(&format!(" {n:>cw$}"));
    }
    println!("{header}");
    for (test, m) in &metrics {
        let mut line = format!("{:<w0$} {:<15}", m.name, m.unit);
        for n in &names {
            let cell = match median_of(samples, n, m.name) {
                Some((v, all)) => {
                    results.push(json!({
                        "tool": n, "metric": m.name, "unit": m.unit, "value": v, "samples": all,
                    }));
                    format!("{v:.*}", m.decimals)
                }
                None if m.name == test.metric() => match reason_no(n, *test) {
                    Some(i) => format!("n/a [{i}]"),
                    None => "n/a".to_string(),
                },
                None => "-".to_string(),
            };
            line.push_str(&format!(" {cell:>cw$}"));
        }
        println!("{}", line.trim_end());
    }
    // netyard / each peer (the runtime scenarios have their own table below).
    let peers: Vec<&String> = names
        .iter()
        .filter(|n| *n != "netyard" && !n.starts_with("podman-"))
        .collect();
    let mut ratios = Vec::new();
    if names.iter().any(|n| n == "netyard") && !peers.is_empty() {
        println!(
            "# netyard / peer, same run (above 1.00x: netyard is better; for CPU costs, the \
             peer's over netyard's)"
        );
        let mut header = format!("{:<w0$} {:<15}", "metric", "");
        for p in &peers {
            header.push_str(&format!(" {:>cw$}", format!("vs {p}")));
        }
        println!("{}", header.trim_end());
        for (_, m) in metrics.iter().filter(|(t, _)| !t.ipv6()) {
            let ny = median_of(samples, &"netyard".to_string(), m.name).map(|x| x.0);
            let mut line = format!("{:<w0$} {:<15}", m.name, "");
            for p in &peers {
                let base = median_of(samples, *p, m.name).map(|x| x.0);
                let cell = match (ny, base) {
                    (Some(v), Some(b)) if b > 0.0 && v > 0.0 => {
                        // Above 1.00x: netyard is better (for a cost, the peer's over ours).
                        let r = if m.lower_is_better { b / v } else { v / b };
                        ratios.push(json!({"metric": m.name, "peer": p, "ratio": r}));
                        format!("{r:.2}x")
                    }
                    _ => "n/a".to_string(),
                };
                line.push_str(&format!(" {cell:>cw$}"));
            }
            println!("{}", line.trim_end());
        }
    }
    // netyard over IPv6 / over IPv4, same run: the cost of the IPv6 path.
    let pairs: Vec<(&str, &str, bool)> = V6_PAIRS
        .iter()
        .filter_map(|(m6, m4)| {
            let def = metrics.iter().find(|(_, d)| d.name == *m6)?;
            Some((*m6, *m4, def.1.lower_is_better))
        })
        .collect();
    if names.iter().any(|n| n == "netyard") && !pairs.is_empty() {
        println!(
            "# netyard IPv6 / IPv4, same run (above 1.00x: IPv6 is better; for CPU s/GB, \
             IPv4's cost over IPv6's); the peers' scenarios are IPv4-only"
        );
        let ny = "netyard".to_string();
        for (m6, m4, lower) in pairs {
            let v6 = median_of(samples, &ny, m6).map(|x| x.0);
            let v4 = median_of(samples, &ny, m4).map(|x| x.0);
            let cell = match (v6, v4) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                    let r = if lower { b / a } else { a / b };
                    ratios.push(json!({"metric": m6, "peer": format!("netyard {m4}"), "ratio": r}));
                    format!("{r:.2}x")
                }
                _ => "n/a".to_string(),
            };
            println!("{m6:<w0$} {cell:>8}  (over {m4})");
        }
    }
    podman_ratios(opts, samples, &metrics, &mut ratios);
    floor_ratios(samples, &mut ratios);
    for (i, (tool, test, e)) in reasons.iter().enumerate() {
        println!("# [{}] {tool} {}: n/a (error: {e})", i + 1, test.name());
    }
    // Failures that did not show as n/a (a test that failed in some runs only).
    for (tool, test, e) in failures {
        if !reasons.iter().any(|r| &r.0 == tool && r.1 == *test) {
            println!("# error: {tool} {}: {e}", test.name());
        }
    }
    for n in notes {
        println!("# note: {n}");
    }
    json!({
        "bench": "netyard egress",
        "seconds": opts.base.seconds,
        "runs": opts.runs,
        "udp_tool": udp,
        "kernel": common::kernel_release(),
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "peers": versions,
        "results": results,
        "ratios": ratios,
        "failures": failures.iter().map(|(tool, test, e)| json!({
            "tool": tool, "test": test.name(), "error": e,
        })).collect::<Vec<_>>(),
        "notes": notes,
    })
}
