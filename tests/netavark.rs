//! The netavark plugin (issue 13) with the real netavark: Debian 13's netavark 1.14 (the
//! backend of Podman 5), unpacked once per test run by `../shared/tools/debian13-bin.sh` with
//! its own C library, runs `netyard` from a test-made plugin directory (a link named for the
//! driver) as Podman makes it: `netavark --config DIR --plugin-directory D setup NETNS <
//! options.json`, then `teardown`.
//!
//! The last two tests run Debian 13's Podman 5.4 itself (with the libsubid it needs beside it)
//! on that netavark: `podman network create -d netyard` (and with `--ipv6`), `podman run`,
//! `podman rm -f`. (Podman 4.3, Debian 12's, has no netavark plugins.)
//!
//! netavark runs in the lab's host namespace, where the daemon runs and publishes ports; the
//! containers are test-made namespaces. What Podman does around netavark is done by the test:
//! it writes the status block's DNS servers into the container's resolv.conf (here
//! /etc/netns/NS/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use common::podman::*;
use common::*;
use serde_json::{json, Value};

/// Debian 13's netavark, unpacked once for this test process into a directory it removes at
/// exit; the error says why it could not be had.
fn netavark() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(unpack_netavark)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The directory of this run's netavark, removed by [`remove_netavark_dir`] at exit.
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_netavark_dir() {
    if let Some(d) = DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn unpack_netavark() -> Result<PathBuf, String> {
    require_root();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // ../shared from the project's root; a worktree one level further down finds it too.
    let script = [
        std::env::var_os("NETYARD_SHARED").map(PathBuf::from),
        Some(manifest.join("../shared")),
        Some(manifest.join("../../shared")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join("tools/debian13-bin.sh"))
    .find(|p| p.is_file())
    .ok_or_else(|| {
        format!(
            "this test needs ../shared/tools/debian13-bin.sh (from {}) to unpack Debian 13's \
             netavark; set NETYARD_SHARED to the shared directory",
            manifest.display()
        )
    })?;
    let dir = std::env::temp_dir().join(format!("nyt-netavark-{}", std::process::id()));
    DIR.set(dir.clone())
        .map_err(|_| "netavark unpacked twice".to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::fs::write(dir.join("script"), script.to_string_lossy().as_bytes())
        .map_err(|e| format!("writing {}/script: {e}", dir.display()))?;
    // SAFETY: registers a plain function with no arguments; it runs once at exit.
    unsafe {
        libc::atexit(remove_netavark_dir);
    }
    let o = run_bounded(
        std::process::Command::new("bash")
            .arg(&script)
            .args(["netavark"])
            .arg(&dir)
            .arg("netavark"),
        Duration::from_secs(300),
    );
    let bin = dir.join("netavark");
    if !o.status.success() || !bin.is_file() {
        return Err(format!(
            "cannot fetch Debian 13's netavark with {} (it downloads netavark, libc6 and \
             libgcc-s1 from this machine's Debian archive, trixie suite):\n{}",
            script.display(),
            show(&o)
        ));
    }
    let v = cmd(
        &[bin.to_str().unwrap_or_default(), "--version"],
        CLI_TIMEOUT,
    );
    if !v.status.success() {
        return Err(format!("the unpacked netavark does not run:\n{}", show(&v)));
    }
    Ok(bin)
}

/// Fetches Debian 13's libsubid5 (Podman 5 links it; Debian 12 has libsubid4) into `$1/lib`,
/// from the Debian archive this machine uses, as debian13-bin.sh fetches the C library.
const LIBSUBID: &str = r#"
set -eu
dir=$1; lists=$(mktemp -d); trap 'rm -rf "$lists"' EXIT
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" >"$lists/trixie.sources"
opts="-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$lists -o Dir::State::Lists=$lists/state -o Dir::Cache=$lists/cache -o APT::Sandbox::User=root"
mkdir -p "$lists/state/partial" "$lists/cache/archives/partial" "$lists/x"
apt-get $opts update -qq
(cd "$lists" && apt-get $opts download libsubid5 >/dev/null)
dpkg-deb -x "$lists"/libsubid5_*.deb "$lists/x"
cp -a "$lists/x/usr/lib/x86_64-linux-gnu/." "$dir/lib/"
"#;

/// Debian 13's Podman 5 (with its C library and libsubid), unpacked once per run beside
/// netavark.
fn podman5() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let netavark = netavark();
        let base = netavark.parent().expect("netavark's directory");
        let dir = base.join("podman5");
        let script = std::fs::read_to_string(base.join("script")).unwrap_or_default();
        let o = run_bounded(
            std::process::Command::new("bash")
                .arg(&script)
                .arg("podman")
                .arg(&dir)
                .arg("podman"),
            Duration::from_secs(300),
        );
        if !o.status.success() {
            return Err(format!(
                "cannot fetch Debian 13's podman with {script}:\n{}",
                show(&o)
            ));
        }
        let o = run_bounded(
            std::process::Command::new("bash")
                .args(["-c", LIBSUBID, "libsubid"])
                .arg(&dir),
            Duration::from_secs(300),
        );
        let bin = dir.join("podman");
        let v = cmd(&[&bin.to_string_lossy(), "--version"], CLI_TIMEOUT);
        if !o.status.success() || !v.status.success() {
            return Err(format!(
                "cannot fetch Debian 13's libsubid5 for Podman 5:\n{}\npodman --version:\n{}",
                show(&o),
                show(&v)
            ));
        }
        Ok(bin)
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// /etc/netns/NS/resolv.conf (what Podman would write from the status block), removed on drop.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(ns: &str, servers: &[String]) -> ResolvConf {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let text: String = servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
        std::fs::write(dir.join("resolv.conf"), text + "options ndots:0\n")
            .unwrap_or_else(|e| panic!("writing {}/resolv.conf: {e}", dir.display()));
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lab with netavark set up: its config dir and a plugin directory whose `netyard` is a
/// link to the binary under test.
struct World {
    lab: Lab,
    netavark: PathBuf,
    config: PathBuf,
    plugins: PathBuf,
}

impl World {
    fn new() -> World {
        let netavark = netavark();
        let lab = Lab::new();
        let config = lab.dir.join("netavark");
        let plugins = lab.dir.join("plugins");
        for d in [&config, &plugins] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        std::os::unix::fs::symlink(NETYARD, plugins.join("netyard"))
            .unwrap_or_else(|e| panic!("linking the plugin: {e}"));
        World {
            lab,
            netavark,
            config,
            plugins,
        }
    }

    /// `netavark --config C --plugin-directory P VERB NETNS < options` in the host namespace,
    /// with NETYARD_API set to the lab's socket when the network's options name none (netavark
    /// hands its environment to the plugin), and to a path where no daemon listens when they
    /// do (the option wins).
    fn netavark(&self, verb: &str, netns: &str, options: &Value) -> Output {
        let named = options["network_info"]
            .as_object()
            .is_some_and(|n| n.values().any(|v| v["options"]["api"].is_string()));
        let env = if named {
            self.lab.dir.join("no-daemon.sock")
        } else {
            self.lab.api.clone()
        };
        let file = self.lab.write_file(
            &format!("{verb}-{}.json", suffix()),
            &serde_json::to_string_pretty(options).expect("json"),
        );
        let script = format!(
            "NETYARD_API={} exec {} --config {} --plugin-directory {} {verb} {netns} < {file}",
            env.display(),
            self.netavark.display(),
            self.config.display(),
            self.plugins.display()
        );
        ns_sh(&self.lab.host.name, &script, Duration::from_secs(60))
    }

    /// Like [`World::netavark`], failing unless it succeeds; returns stdout.
    fn netavark_ok(&self, verb: &str, netns: &str, options: &Value) -> String {
        let o = self.netavark(verb, netns, options);
        if !o.status.success() {
            self.lab.fail(&format!(
                "netavark {verb} {netns} failed:\n{}\ninput: {options}",
                show(&o)
            ));
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `setup`, returning the status block of network `net`.
    fn setup(&self, netns: &str, options: &Value, net: &str) -> Value {
        let out = self.netavark_ok("setup", netns, options);
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            self.lab
                .fail(&format!("netavark setup printed no JSON ({e}):\n{out}"))
        });
        v[net].clone()
    }
}

/// netavark's input for container `name` on network `net` (the shape of its
/// test/500-plugin.bats, with what Podman adds: addresses from its IPAM, aliases, ports).
fn options(
    name: &str,
    net: &str,
    subnet: &Subnet,
    host: u8,
    net_opts: Value,
    ports: Value,
) -> Value {
    json!({
        "container_id": format!("{:0>64}", suffix()),
        "container_name": name,
        "port_mappings": ports,
        "networks": {net: {
            "interface_name": "eth0",
            "aliases": [format!("{name}-alias")],
            "static_ips": [subnet.ip(host)],
        }},
        "network_info": {net: {
            "name": net,
            "id": format!("{:0>64}", "1d"),
            "driver": "netyard",
            "network_interface": "",
            "ipv6_enabled": false,
            "internal": false,
            "dns_enabled": true,
            "subnets": [{"subnet": subnet.cidr(), "gateway": subnet.ip(1)}],
            "ipam_options": {"driver": "host-local"},
            "options": net_opts,
        }},
    })
}

/// Serves TCP port 80: each connection is answered with the peer's address, then closed.
const PEER_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall((a[0] + "\n").encode())
    c.close()
"#;

/// `client.py HOST PORT`: prints the line the server answers.
const PEER_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(c.makefile().readline().strip())
"#;

#[test]
fn two_containers_reach_and_resolve_each_other_and_a_published_port_keeps_the_client_address() {
    require_program("dig", "bind9-dnsutils");
    require_program("python3", "python3");
    let w = World::new();
    let lab = &w.lab;
    let net = format!("nv{}", lab.id);
    let subnet = Subnet::random();
    let c1 = lab.ns("a");
    let c2 = lab.ns("b");
    let api = json!({"api": lab.api.to_str().unwrap_or_default()});
    let o1 = options("web1", &net, &subnet, 5, api.clone(), json!(null));
    let o2 = options(
        "web2",
        &net,
        &subnet,
        6,
        json!({}),
        json!([{"container_port": 80, "host_ip": "", "host_port": 18080, "protocol": "tcp", "range": 1}]),
    );

    // The daemon has no such network: setup creates it from network_info.
    let s1 = w.setup(&format!("/run/netns/{c1}"), &o1, &net);
    let s2 = w.setup(&format!("/run/netns/{c2}"), &o2, &net);
    let gw = subnet.ip(1);
    for (s, ns, name, host, o) in [(&s1, &c1, "web1", 5, &o1), (&s2, &c2, "web2", 6, &o2)] {
        let ep = lab.endpoint(&net, name);
        let key = format!(
            "netavark:{}:{net}",
            o["container_id"].as_str().unwrap_or_default()
        );
        assert_eq!(ep["owner"], key.as_str(), "the endpoint's owner key");
        assert_eq!(
            ep["ip"],
            subnet.ip(host),
            "Podman's address is the endpoint's"
        );
        assert_eq!(ep["kind"], "veth");
        let want = json!({
            "dns_search_domains": [],
            "dns_server_ips": [gw],
            "interfaces": {"eth0": {
                "mac_address": ep["mac"],
                "subnets": [{"ipnet": format!("{}/24", subnet.ip(host)), "gateway": gw}],
            }},
        });
        if *s != want {
            lab.fail(&format!("status block for {name}: {s}, expected {want}"));
        }
        lab.check_interface(ns, "eth0", &ep);
    }
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["subnet"], subnet.cidr(), "{info}");

    // A repeated setup of the same namespace answers the same endpoint.
    let again = w.setup(&format!("/run/netns/{c1}"), &o1, &net);
    assert_eq!(again, s1, "a repeated setup answers the same status");

    // Podman writes the status block's DNS servers into resolv.conf: names resolve through the
    // gateway, and the containers reach each other by name and alias.
    let servers = vec![gw.clone()];
    let _r1 = ResolvConf::new(&c1, &servers);
    let _r2 = ResolvConf::new(&c2, &servers);
    for (from, name, want) in [
        (&c1, "web2", subnet.ip(6)),
        (&c1, "web2-alias", subnet.ip(6)),
        (&c2, "web1", subnet.ip(5)),
    ] {
        let o = lab.ns_cmd(
            from,
            &[
                "dig",
                "+short",
                "+time=2",
                "+tries=3",
                &format!("@{gw}"),
                name,
            ],
            Duration::from_secs(30),
        );
        let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if got != want {
            lab.fail(&format!(
                "{name} from {from} via {gw}: {got:?}, expected {want}\n{}",
                show(&o)
            ));
        }
        lab.assert_ping(from, name);
    }

    // The published port answers from an outside namespace with the client's address kept.
    let outside = lab.outside();
    let server = lab.write_file("server.py", PEER_SERVER);
    lab.bg_in(&c2, &["python3", &server], "server.log");
    assert!(
        wait_listening(&c2, 80, Proto::Tcp),
        "the server in {c2} did not listen"
    );
    let client = lab.write_file("client.py", PEER_CLIENT);
    let peer = py_ok(lab, &outside.ns, &client, &[&outside.host_ip, "18080"]);
    assert_eq!(peer, outside.ip, "the container sees the client's address");

    // teardown detaches; again, and with the namespace gone, it is still success.
    let out = w.netavark_ok("teardown", &format!("/run/netns/{c1}"), &o1);
    assert_eq!(out, "", "teardown prints nothing on success");
    w.netavark_ok("teardown", &format!("/run/netns/{c2}"), &o2);
    w.netavark_ok("teardown", &format!("/run/netns/{c2}"), &o2);
    // netavark 1.14 refuses a missing namespace itself; later ones call the plugin anyway
    // (its test/500-plugin.bats), which must succeed.
    let plugin_input = json!({
        "container_id": o2["container_id"],
        "container_name": o2["container_name"],
        "port_mappings": o2["port_mappings"],
        "network": o2["network_info"][&net],
        "network_options": o2["networks"][&net],
    });
    let file = lab.write_file("teardown-gone.json", &plugin_input.to_string());
    let o = ns_sh(
        &lab.host.name,
        &format!(
            "NETYARD_API={} exec {NETYARD} teardown /run/netns/{c2}-gone < {file}",
            lab.api.display()
        ),
        CLI_TIMEOUT,
    );
    assert!(
        o.status.success() && o.stdout.trim_ascii().is_empty(),
        "teardown of a missing namespace: {}",
        show(&o)
    );
    let ps = lab.ny_json(&["ps", "--json"]);
    assert_eq!(ps, json!([]), "teardown leaves nothing in ps");
    let left: Vec<String> = links(&lab.host.name)
        .into_iter()
        .filter(|l| is_netyard_host_end(l))
        .collect();
    assert!(left.is_empty(), "veth host ends left: {left:?}");
    assert!(
        link_json(&c1, "eth0").is_none(),
        "eth0 still in {c1} after teardown"
    );
    let p = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &lab.host.name,
            "ss",
            "-Htln",
            "sport = :18080",
        ],
        CLI_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&p.stdout).trim().is_empty(),
        "port 18080 still bound after teardown: {}",
        show(&p)
    );
}

#[test]
fn create_completes_the_config_and_bad_input_gets_netavarks_error_shape() {
    let w = World::new();
    let lab = &w.lab;
    let net = format!("nc{}", lab.id);

    // Podman runs `create` itself (not through netavark), with its own environment: the daemon
    // is found through NETYARD_API here, and chooses the subnet.
    let input = json!({
        "name": net, "id": format!("{:0>64}", "2e"), "driver": "netyard",
        "created": "2026-12-06T02:00:00Z", "labels": {"app": "t"},
        "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "options": {"mtu": "1400"},
    });
    let file = lab.write_file("create.json", &input.to_string());
    let o = run_bounded(
        std::process::Command::new("sh")
            .args(["-c", &format!("exec {NETYARD} create < {file}")])
            .env("NETYARD_API", &lab.api),
        CLI_TIMEOUT,
    );
    assert!(o.status.success(), "netyard create failed:\n{}", show(&o));
    let out: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("create printed no JSON ({e}):\n{}", show(&o)));
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(out["name"], input["name"]);
    assert_eq!(out["id"], input["id"]);
    assert_eq!(out["driver"], "netyard");
    assert_eq!(out["labels"], input["labels"], "Podman's fields come back");
    assert_eq!(out["created"], input["created"]);
    assert_eq!(out["subnets"][0]["subnet"], info["subnet"], "{out}");
    assert_eq!(out["subnets"][0]["gateway"], info["gateway"], "{out}");
    assert_eq!(info["mtu"], 1400);
    assert_eq!(out["options"]["mtu"], "1400");

    // Bad input: netavark's error shape, naming the field, nothing attached.
    let subnet = Subnet::random();
    let c = lab.ns("c");
    let api = json!({"api": lab.api.to_str().unwrap_or_default()});
    let sctp = options(
        "bad1",
        &net,
        &subnet,
        5,
        api.clone(),
        json!([{"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "sctp", "range": 1}]),
    );
    let mut unknown = options("bad2", &net, &subnet, 5, api, json!(null));
    unknown["network_info"][&net]["options"]["vlan"] = json!("5");
    for (input, needle) in [
        (&sctp, "port_mappings[0].protocol"),
        (&unknown, "network.options.vlan"),
    ] {
        let o = w.netavark("setup", &format!("/run/netns/{c}"), input);
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("netavark printed no error JSON ({e}):\n{}", show(&o)));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("plugin \"netyard\" failed: exit code 1, message: ")
                && msg.contains(needle),
            "netavark's error names the plugin and the field {needle}: {v}"
        );
    }
    // A subnet that is not the daemon's network's: refused, naming it.
    let mismatch = options(
        "bad3",
        &net,
        &subnet,
        5,
        json!({"api": lab.api.to_str().unwrap_or_default()}),
        json!(null),
    );
    let o = w.netavark("setup", &format!("/run/netns/{c}"), &mismatch);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("network.subnets[0].subnet"),
        "{}",
        show(&o)
    );
    let ps = lab.ny_json(&["ps", "--json"]);
    assert_eq!(ps, json!([]), "failed setups attach nothing");
    assert!(
        link_json(&c, "eth0").is_none(),
        "no eth0 in {c} after failed setups"
    );

    // The plugin's own info, as Podman asks it.
    let o = cmd(&[NETYARD, "info"], CLI_TIMEOUT);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(v["api_version"], "1.0.0", "{}", show(&o));
    assert_eq!(v["name"], "netyard");
}

/// Debian 13's Podman 5 on Debian 13's netavark (found through helper_binaries_dir) with
/// netyard as its plugin, the lab's daemon started for it ([`Podman::with_netyard_plugin`]).
fn podman5_with_plugin(lab: &mut Lab) -> Podman {
    let podman5 = podman5();
    let netavark = netavark();
    let mut podman = Podman::with_netyard_plugin(
        lab,
        |dir| {
            format!(
                "network_backend = \"netavark\"\nnetavark_plugin_dirs = [\"{}\"]",
                dir.display()
            )
        },
        &format!(
            "helper_binaries_dir = [\"{}\", \"/usr/lib/podman\", \"/usr/libexec/podman\"]",
            netavark.parent().expect("netavark's directory").display()
        ),
    );
    podman.set_program(&podman5);
    podman
}

#[test]
fn podman5_runs_containers_on_a_netyard_network_through_the_plugin() {
    require_podman();
    require_program("python3", "python3");
    let mut lab = Lab::bare();
    let podman = podman5_with_plugin(&mut lab);
    let outside = lab.outside();

    let sub = Subnet::random();
    let net = format!("nyp{}", lab.id);
    let api = format!("api={}", lab.api.display());
    podman.ok(
        &lab,
        &[
            "network",
            "create",
            "-d",
            "netyard",
            "--subnet",
            &sub.cidr(),
            "-o",
            &api,
            &net,
        ],
    );
    let inspect = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(
        inspect["subnet"],
        sub.cidr(),
        "create made the netyard network"
    );

    let image = podman.import_web_image(
        &lab,
        &format!("nyt{}img", lab.id),
        &[
            "sh", "sleep", "httpd", "nc", "cat", "nslookup", "ping", "echo",
        ],
    );
    let (web, cli) = (format!("nyt{}web", lab.id), format!("nyt{}cli", lab.id));
    podman.run_web_and_client(&lab, &net, &image, (&web, &cli), "18081:80");
    let ep_web = lab.endpoint(&net, &web);
    let ep_cli = lab.endpoint(&net, &cli);
    let shown = podman.ok(
        &lab,
        &[
            "inspect",
            &web,
            "--format",
            "{{json .NetworkSettings.Networks}}",
        ],
    );
    let shown: Value = serde_json::from_str(&shown).unwrap_or(Value::Null);
    assert_eq!(
        shown[&net]["IPAddress"], ep_web["ip"],
        "podman inspect shows the status block"
    );
    assert_eq!(shown[&net]["MacAddress"], ep_web["mac"]);

    // Podman wrote the status block's DNS server (the gateway) into resolv.conf.
    podman.check_by_name(
        &lab,
        (&web, &cli),
        &sub.ip(1),
        (
            ep_web["ip"].as_str().unwrap_or_default(),
            ep_cli["ip"].as_str().unwrap_or_default(),
        ),
    );
    // -p 18081:80 from the outside namespace keeps the client's address.
    fetch_published(&lab, &outside, 18081);
    // podman rm -f: netavark teardown for both; nothing left in ps.
    podman.rm_leaves_nothing(&lab, &[&web, &cli]);
}

/// `podman network create -d netyard --ipv6` (issue 15) with Debian 13's Podman 5.4 on the
/// plugin: a dual-stack netyard network with Podman's IPv6 prefix; each container gets its
/// IPv6 address from Podman's IPAM (the endpoint's, shown by `podman inspect`, on eth0
/// inside) and ping -6s the gateway and the other container.
#[test]
fn podman5_dual_stack_network_gives_containers_their_ipv6_addresses_through_the_plugin() {
    require_podman();
    let mut lab = Lab::bare();
    let podman = podman5_with_plugin(&mut lab);

    let sub = Subnet::random();
    let sub6 = format!(
        "fd{:02x}:{:x}:{:x}::/64",
        rand::random::<u8>(),
        sub.a,
        sub.b
    );
    let net = format!("nyq{}", lab.id);
    let api = format!("api={}", lab.api.display());
    podman.ok(
        &lab,
        &[
            "network",
            "create",
            "-d",
            "netyard",
            "--ipv6",
            "--subnet",
            &sub.cidr(),
            "--subnet",
            &sub6,
            "-o",
            &api,
            &net,
        ],
    );
    let info = lab.ny_json(&["network", "inspect", &net]);
    let gw6 = info["gateway6"].as_str().unwrap_or_default().to_string();
    if info["subnet6"] != sub6.as_str() || gw6.is_empty() {
        lab.fail(&format!(
            "podman network create --ipv6 --subnet {sub6}: netyard's network is {info}"
        ));
    }

    let image = format!("nyt{}img6", lab.id);
    podman.import_busybox(&lab, &image, &["sh", "sleep", "ping", "ip", "cat"]);
    let image = format!("localhost/{image}");
    let names = [format!("nyt{}v6a", lab.id), format!("nyt{}v6b", lab.id)];
    for name in &names {
        podman.run_idle(&lab, &net, name, &[], &image);
    }
    let prefix: ipnet::Ipv6Net = sub6.parse().expect("prefix");
    let mut ip6s = Vec::new();
    for name in &names {
        let ep = lab.endpoint(&net, name);
        let ip6 = ep["ip6"].as_str().unwrap_or_default().to_string();
        let in_prefix = ip6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| prefix.contains(&a));
        if !in_prefix || ep["prefix_len6"] != 64 {
            lab.fail(&format!("{name}: no IPv6 address in {sub6}: {ep}"));
        }
        let shown = podman.ok(
            &lab,
            &[
                "inspect",
                name,
                "--format",
                "{{json .NetworkSettings.Networks}}",
            ],
        );
        let shown: Value = serde_json::from_str(&shown).unwrap_or(Value::Null);
        if shown[&net]["GlobalIPv6Address"] != ip6.as_str() {
            lab.fail(&format!(
                "podman inspect {name} does not show {ip6}: {shown}"
            ));
        }
        let inside = podman.ok(
            &lab,
            &["exec", name, "ip", "-6", "addr", "show", "dev", "eth0"],
        );
        if !inside.contains(&format!("{ip6}/64")) {
            lab.fail(&format!("{name}'s eth0 lacks {ip6}/64:\n{inside}"));
        }
        ip6s.push(ip6);
    }
    // ping -6 the gateway and the other container (neighbour discovery first: a few tries).
    for (from, to) in [
        (&names[0], gw6.as_str()),
        (&names[0], ip6s[1].as_str()),
        (&names[1], ip6s[0].as_str()),
    ] {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
            podman
                .run(&["exec", from, "ping", "-6", "-c", "2", "-W", "3", to])
                .status
                .success()
        });
        if !ok {
            let o = podman.run(&["exec", from, "ping", "-6", "-c", "2", "-W", "3", to]);
            lab.fail(&format!("ping -6 from {from} to {to}:\n{}", show(&o)));
        }
    }
    podman.rm_leaves_nothing(&lab, &[&names[0], &names[1]]);
}
