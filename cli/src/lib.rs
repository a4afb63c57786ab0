//! The `netyard` command: clap definitions and the API client behind every command except
//! `daemon` (and `demo`, which embeds a daemon): those two are dispatched by the root package.
//!
//! Every client command talks HTTP+JSON to a running daemon over its Unix socket and exits 0
//! on success, non-zero with a one-line reason on failure.

pub mod client;
pub mod commands;
pub mod exec;
pub mod lab;
pub mod link;
pub mod manual;
pub use netyard_api::model;
pub mod nsexec;
pub mod router;
pub mod runmode;
pub use netyard_api::portspec;
pub mod table;
pub mod top;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::{ApiClient, ClientError};

/// Userspace virtual switch and router for containers.
#[derive(Debug, Parser)]
#[command(name = "netyard", version, about)]
pub struct Cli {
    /// The daemon's API socket [default: /run/netyard/api.sock as root,
    /// $XDG_RUNTIME_DIR/netyard/api.sock otherwise]
    #[arg(long, global = true, env = "NETYARD_API", value_name = "SOCKET")]
    pub api: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the current network namespace (its "host").
    Daemon(DaemonArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Attach a network namespace to a network.
    Attach(AttachArgs),
    /// Detach an endpoint from a network and remove its interface.
    Detach { network: String, name: String },
    /// Show an endpoint as JSON (on every network it is attached to under that name), with
    /// the resolv.conf its container should use.
    Inspect {
        name: String,
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Publish ports of an attached endpoint (all or nothing: one busy host port fails
    /// them all).
    Publish {
        network: String,
        name: String,
        /// [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp] (repeatable).
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// Stop publishing the endpoint's ports that SPEC names: its protocol and container
    /// port(s), and the host IP and host port(s) when given (`80` removes every mapping of
    /// 80/tcp, `8080:80` only the one on host port 8080).
    Unpublish {
        network: String,
        name: String,
        #[arg(value_name = "SPEC")]
        spec: String,
    },
    /// Rename an endpoint (its DNS name changes at once).
    Rename {
        network: String,
        name: String,
        new_name: String,
    },
    /// List endpoints.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Show a network's MAC table (`fdb NETWORK`), or change its static remote entries.
    Fdb(FdbArgs),
    /// Link impairment and faults: netem's delay, jitter, loss, duplication, corruption,
    /// reordering and rate per endpoint and direction, and carrier off/on, at runtime.
    #[command(subcommand)]
    Link(link::LinkCommand),
    /// Routers between networks: an interface on each, static routes, masquerading.
    #[command(subcommand)]
    Router(router::RouterCommand),
    /// Egress flows through each network's gateway (the connection tracker).
    Flows {
        #[arg(long)]
        json: bool,
    },
    /// Per-port counters.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Live view: every port's packets, bytes and drops per second, the busiest egress flows
    /// and the DNS query rate, refreshed every --interval; q (or Ctrl-C) quits.
    Top {
        /// Print one reading and exit: two samples --interval apart.
        #[arg(long)]
        once: bool,
        /// With --once: the reading as JSON.
        #[arg(long, requires = "once")]
        json: bool,
        /// Seconds between samples (0.1 to 60).
        #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval_secs)]
        interval: f64,
    },
    /// Serve Docker's remote network and IPAM driver (`docker network create -d netyard
    /// --ipam-driver netyard`) on /run/docker/plugins/netyard.sock; `netyard docker-plugin
    /// --help` lists its options.
    #[command(name = "docker-plugin", disable_help_flag = true)]
    DockerPlugin {
        /// The plugin's own arguments (`--socket PATH`, `--api PATH`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Capture a network's (or one endpoint's) frames to a pcap file: `capture NETWORK
    /// [ENDPOINT] -w -` streams live to standard output (`| tshark -r -`, `| tcpdump -r -`).
    Capture {
        network: String,
        /// Only this endpoint's port (frames it receives and sends), as --endpoint.
        #[arg(value_name = "ENDPOINT", conflicts_with = "endpoint")]
        endpoint_arg: Option<String>,
        /// Only this endpoint's port (frames it receives and sends); default: every frame
        /// entering the network's switch.
        #[arg(long)]
        endpoint: Option<String>,
        /// Stop after this many frames.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Output file ("-" for standard output, e.g. `| tcpdump -r -`).
        #[arg(short = 'w', long, default_value = "-")]
        write: String,
    },
    /// Run a command in a fresh network namespace attached to a network.
    Run(RunArgs),
    /// Labs: networks, nodes, routes and impaired links from one TOML or YAML file.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Run a command in a node's namespace (a lab's node); its exit status is passed through.
    Exec {
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Start an embedded daemon with a demo network and two namespaces that ping each other.
    Demo(DemoArgs),
    /// Print a shell completion script: `netyard completions bash >
    /// /etc/bash_completion.d/netyard` (zsh: a `_netyard` file in $fpath; fish:
    /// ~/.config/fish/completions/netyard.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (netyard.1 and one per subcommand, netyard-network-create.1, ...)
    /// into DIR, e.g. /usr/local/share/man/man1.
    Man { dir: PathBuf },
    /// The daemon as a whole.
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove every network and endpoint and forget the saved state: the daemon starts over
    /// empty, as on its first run.
    Reset,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// TOML file declaring networks and endpoints to create at start-up.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the daemon keeps its state (default /var/lib/netyard as root,
    /// $XDG_STATE_HOME/netyard or ~/.local/state/netyard otherwise). One daemon per directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep no state, make no device persistent, remove everything on exit (tests, demos,
    /// benchmarks).
    #[arg(long, conflicts_with = "state_dir")]
    pub ephemeral: bool,
    /// Upstream DNS server for names outside netyard (repeatable, at most 3; default: the
    /// host's /etc/resolv.conf). Queried from the daemon's namespace, so loopback works.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub dns_upstream: Vec<String>,
    /// TTL in seconds of the resolver's answers for container names [default: 60].
    #[arg(long, value_name = "SECS")]
    pub dns_ttl: Option<u32>,
    /// etcd endpoints (http:// URLs, comma-separated or repeated): VXLAN networks, endpoints
    /// and addresses are shared with every daemon registered there.
    #[arg(long, value_name = "URL[,URL...]", requires_all = ["node", "underlay_ip"])]
    pub etcd: Vec<String>,
    /// This daemon's name in etcd (one per host).
    #[arg(long, value_name = "NAME", requires = "etcd")]
    pub node: Option<String>,
    /// This host's VTEP address on the underlay: the local address of every VXLAN tunnel.
    #[arg(long, value_name = "IP", requires = "etcd")]
    pub underlay_ip: Option<String>,
    /// TTL in seconds of this daemon's etcd lease: how long a dead daemon's entries outlive it
    /// [default: 10].
    #[arg(long, value_name = "SECS", requires = "etcd")]
    pub etcd_lease_ttl: Option<u32>,
    /// Key prefix in etcd [default: /netyard/v1/].
    #[arg(long, value_name = "PREFIX", requires = "etcd")]
    pub etcd_prefix: Option<String>,
    /// Threads for the data plane (each network forwards on one of them) and, as many again,
    /// for the API (default: one per CPU). On a machine shared with busy containers, fewer
    /// threads compete less with them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Log lines as text, or as one JSON object per line for journald or Loki (`timestamp`,
    /// `level`, `target`, `message` and the event's fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Also serve Prometheus metrics (`/metrics`, nothing else) over plain HTTP on this TCP
    /// address, e.g. 127.0.0.1:9495 (off by default; the API socket serves `/metrics` always).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<String>,
}

/// `daemon --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        name: String,
        /// IPv4 subnet in CIDR form; a free private /24 when absent.
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Dual stack: endpoints get an IPv6 address too; the gateway advertises itself as
        /// their IPv6 router.
        #[arg(long)]
        ipv6: bool,
        /// IPv6 prefix (needs --ipv6); a random /64 of fd00::/8 when absent (a macvlan
        /// network needs it: its LAN's prefix).
        #[arg(long, value_name = "PREFIX")]
        subnet6: Option<String>,
        /// IPv6 gateway address (needs --ipv6; default: the prefix's ::1); on a macvlan
        /// network the LAN's router.
        #[arg(long, value_name = "ADDR")]
        gateway6: Option<String>,
        #[arg(long)]
        mtu: Option<u32>,
        /// No traffic leaves the network (no egress, no published ports).
        #[arg(long)]
        internal: bool,
        /// Connections to the gateway address (except DNS) reach the host's 127.0.0.1.
        #[arg(long)]
        host_loopback: bool,
        /// One more address the gateway answers on (ARP or NDP, ping, DNS; IPv6 with
        /// --ipv6); repeatable.
        #[arg(long = "gateway-extra", value_name = "IP")]
        gateway_extra: Vec<String>,
        /// Egress to GUEST leaves to the host address HOST (replies come from GUEST);
        /// repeatable.
        #[arg(long = "map", value_name = "GUEST=HOST")]
        maps: Vec<String>,
        /// Serve DNS on 127.0.0.11 inside the network's containers [default: true];
        /// `--container-resolver=false` for containers whose runtime serves that address
        /// itself (Docker): they reach netyard's resolver at the gateway's address.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        container_resolver: Option<bool>,
        /// Endpoint ports accept only frames from their own MAC and addresses [default:
        /// true]; `--port-security=false` turns it off for the whole network.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        port_security: Option<bool>,
        /// Inter-container communication [default: true]; `--icc=false` lets the network's
        /// endpoints reach only the gateway (egress, DNS, published ports), never each other
        /// (Docker's com.docker.network.bridge.enable_icc).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        icc: Option<bool>,
        /// Most live egress flows per endpoint [default: 512].
        #[arg(long, value_name = "N")]
        max_flows_per_endpoint: Option<u32>,
        /// Most live egress flows on the network [default: 16384].
        #[arg(long, value_name = "N")]
        max_flows: Option<u32>,
        /// MAC ageing time in seconds.
        #[arg(long)]
        aging: Option<u64>,
        /// Most MACs one port may own.
        #[arg(long)]
        max_macs_per_port: Option<u32>,
        /// Span hosts: a VXLAN tunnel port with this VNI (0-16777215). The MTU defaults to the
        /// underlay's minus 50.
        #[arg(long, value_name = "VNI")]
        vxlan: Option<u32>,
        /// Local underlay address of the tunnel [default: any].
        #[arg(long, value_name = "IP", requires = "vxlan")]
        vxlan_local: Option<String>,
        /// UDP port of the tunnel [default: 4789].
        #[arg(long, value_name = "PORT", requires = "vxlan")]
        vxlan_port: Option<u32>,
        /// A remote VTEP that gets broadcast, multicast and unknown unicast (repeatable).
        #[arg(long = "vxlan-peer", value_name = "IP", requires = "vxlan")]
        vxlan_peers: Vec<String>,
        /// bridge (netyard's gateway) or macvlan (the containers join the LAN of --parent
        /// with their own MACs; the LAN's router is their gateway) [default: bridge].
        #[arg(short = 'd', long, value_name = "DRIVER")]
        driver: Option<String>,
        /// The host interface a macvlan network's uplink is opened on (needs CAP_NET_RAW).
        #[arg(long, value_name = "IFACE")]
        parent: Option<String>,
        /// Automatic addresses come from this CIDR inside the subnet.
        #[arg(long, value_name = "CIDR")]
        ip_range: Option<String>,
        /// A driver option as Docker takes it: parent=IFACE, macvlan_mode=bridge (repeatable).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// Router ROUTER (which exists) gets an interface on the new network, at IP or the
        /// next free address, and is its endpoints' default gateway (`router connect` then
        /// `network update --gateway-router`, undone if a step fails).
        #[arg(long, value_name = "ROUTER[=IP]")]
        gateway_router: Option<String>,
    },
    /// List networks.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one network as JSON.
    Inspect { name: String },
    /// Change a network: its endpoints' default gateway.
    Update {
        name: String,
        /// The endpoints' default gateway becomes router ROUTER's address on the network
        /// (ROUTER needs an interface on it), now and for every later attach; DNS stays at
        /// 127.0.0.11, the network's gateway keeps its address.
        #[arg(long, value_name = "ROUTER", conflicts_with = "no_gateway_router")]
        gateway_router: Option<String>,
        /// netyard's gateway is the default gateway again.
        #[arg(long)]
        no_gateway_router: bool,
    },
    /// Remove a network (refused while endpoints are attached).
    Rm { name: String },
}

/// `netyard fdb NETWORK [--json]`, `netyard fdb add ...`, `netyard fdb del ...`. (A network
/// named `add` or `del` is shown with `fdb --json add` ... or through the API.)
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct FdbArgs {
    #[command(subcommand)]
    pub command: Option<FdbCommand>,
    /// The network whose MAC table to show.
    #[arg(required = true)]
    pub network: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FdbCommand {
    /// Add a static remote entry on a VXLAN network: MAC lives behind the VTEP at IP (never
    /// ages, never moves).
    Add {
        network: String,
        mac: String,
        /// The remote VTEP's underlay address.
        #[arg(long, value_name = "IP")]
        remote: String,
    },
    /// Remove a static remote entry.
    Del { network: String, mac: String },
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    pub network: String,
    /// Network namespace path (/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long, conflicts_with = "pid", required_unless_present = "pid")]
    pub netns: Option<String>,
    /// Process whose namespaces to join (finds its user namespace too).
    #[arg(long)]
    pub pid: Option<i32>,
    /// User namespace owning the network namespace (rootless containers).
    #[arg(long)]
    pub userns: Option<String>,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address on a dual-stack network (default: the next free one).
    #[arg(long)]
    pub ip6: Option<String>,
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// tap (netyard holds a TAP inside the namespace) or veth (AF_PACKET on the host end).
    #[arg(long, default_value = "tap")]
    pub kind: String,
    /// Disable the virtio-net header and offloads on this port.
    #[arg(long)]
    pub no_offload: bool,
    /// Let the endpoint send from any MAC and address (a router or bridge): no port security.
    #[arg(long)]
    pub trusted: bool,
    /// Extra DNS name of the endpoint on this network (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Publish a port: [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp] (repeatable). No
    /// host port: an ephemeral one (see `ps`); no host IP: every address, IPv4 and IPv6.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A network to attach to (repeatable: eth0, eth1, ... in order), or Docker's modes:
    /// `none` (only `lo`), `host` (the daemon's network namespace), `container:NAME` (the
    /// namespace of endpoint NAME).
    #[arg(long, required = true, value_name = "NET|none|host|container:NAME")]
    pub network: Vec<String>,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address on a dual-stack network (default: the next free one).
    #[arg(long)]
    pub ip6: Option<String>,
    #[arg(long)]
    pub mac: Option<String>,
    /// tap (default) or veth.
    #[arg(long)]
    pub kind: Option<String>,
    /// Extra DNS name of the endpoint (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Publish a port: [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp] (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Disable the virtio-net header and offloads on this port.
    #[arg(long)]
    pub no_offload: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port kind for the two demo namespaces.
    #[arg(long, default_value = "tap")]
    pub kind: String,
}

/// `top --interval`: seconds, 0.1 to 60.
fn interval_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (0.1..=60.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} out of range (0.1 to 60 seconds)"))
    }
}

/// Where the API socket lives when `--api`/`NETYARD_API` are not given.
pub fn default_api_path() -> PathBuf {
    default_state_dir().join("api.sock")
}

/// Where the daemon keeps its state when `--state-dir` is not given: /var/lib/netyard as root;
/// otherwise $XDG_STATE_HOME/netyard, or ~/.local/state/netyard (the XDG default), with the
/// home directory from $HOME or else the user database. Only a user with no home at all gets a
/// directory under the runtime one, which does not survive a reboot.
pub fn default_persistent_state_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/var/lib/netyard");
    }
    // The XDG spec says relative values are invalid and to be ignored.
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if d.is_absolute() {
            return d.join("netyard");
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.dir)
                .filter(|h| h.is_absolute())
        });
    match home {
        Some(h) => h.join(".local/state/netyard"),
        None => default_state_dir().join("state"),
    }
}

/// The API socket's directory: /run/netyard as root, $XDG_RUNTIME_DIR/netyard (or
/// /tmp/netyard-UID) otherwise.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/netyard");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("netyard"),
        _ => PathBuf::from(format!("/tmp/netyard-{}", nix::unistd::geteuid())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(args: &[&str]) -> Result<DaemonArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["netyard", "daemon"], args].concat())?;
        match cli.command {
            Command::Daemon(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn ephemeral_and_state_dir_exclude_each_other() {
        let a = daemon(&["--ephemeral"]).expect("--ephemeral");
        assert!(a.ephemeral && a.state_dir.is_none());
        let a = daemon(&["--state-dir", "/tmp/x"]).expect("--state-dir");
        assert!(!a.ephemeral);
        assert_eq!(a.state_dir, Some(PathBuf::from("/tmp/x")));
        let e = daemon(&["--ephemeral", "--state-dir", "/tmp/x"]).expect_err("both");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn system_reset_parses() {
        let cli = Cli::try_parse_from(["netyard", "system", "reset"]).expect("parse");
        assert!(matches!(cli.command, Command::System(SystemCommand::Reset)));
        assert!(Cli::try_parse_from(["netyard", "system"]).is_err());
    }

    #[test]
    fn the_persistent_default_is_absolute_and_not_the_socket_dir() {
        let d = default_persistent_state_dir();
        assert!(d.is_absolute(), "{}", d.display());
        assert!(
            d.ends_with("netyard") || d.ends_with("state"),
            "{}",
            d.display()
        );
        assert_ne!(d, default_state_dir());
    }
}
