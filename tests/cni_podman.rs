//! Rootful Podman 4.3 with its CNI backend drives netyard through the CNI plugin (issue 13):
//! a conflist with `"type": "netyard"` in a test-made config directory, the plugin directory
//! holding a `netyard` link to the binary under test, `enable_port_reservation = false` (see
//! README: Podman would otherwise hold every published host port itself). Two containers on
//! the network resolve and reach each other by name (Podman writes the result's dns, the
//! embedded resolver, to their resolv.conf), `-p 8080:80` answers a client in a test-made
//! outside namespace with the client's own address, and `podman rm -f` leaves nothing in
//! `netyard ps`.
//!
//! Podman runs as tests/common/podman.rs sets it up; its network namespaces
//! (/run/netns/cni-...) are bind mounts in its private mount namespace, so the daemon runs in
//! that mount namespace too (in the lab's host network namespace), as daemon and runtime share
//! the machine's in production.

mod common;

use std::time::{Duration, Instant};

use common::podman::*;
use common::*;
use serde_json::json;

/// The busybox applets the containers use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "nc", "cat", "nslookup", "ping", "ip", "hostname", "echo",
];

/// The web server's CGI script: answers with the client's address as httpd saw it.
const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"peer=$REMOTE_ADDR\"\n";

/// An HTTP/1.0 GET of `PATH` from `HOST:PORT` (the arguments); prints the answer.
const HTTP_GET: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(("GET %s HTTP/1.0\r\n\r\n" % sys.argv[3]).encode())
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
print(out.decode())
"#;

fn ps_names(lab: &Lab) -> Vec<String> {
    lab.ny_json(&["ps", "--json"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn podman_containers_on_a_netyard_cni_network_resolve_reach_and_publish() {
    require_root();
    require_podman();
    require_program("python3", "python3");
    let t_test = Instant::now();

    let mut lab = Lab::bare();
    let bin = lab.dir.join("cnibin");
    std::fs::create_dir_all(&bin).expect("mkdir cnibin");
    std::os::unix::fs::symlink(NETYARD, bin.join("netyard")).expect("link netyard");
    let mut podman = Podman::with_conf(
        &lab,
        &format!(
            "network_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]",
            bin.display()
        ),
        "enable_port_reservation = false",
    );
    lab.start_daemon_in_mount_ns(podman.holder_pid(), &[]);
    podman.in_netns(&lab.host.path());
    let outside = lab.outside();

    let sub = Subnet::random();
    let net = format!("nyc{}", lab.id);
    let conflist = json!({
        "cniVersion": "0.4.0",
        "name": net,
        "plugins": [{
            "type": "netyard",
            "network": net,
            "subnet": sub.cidr(),
            "api": lab.api.to_string_lossy(),
            "capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true}
        }]
    });
    std::fs::write(
        podman.networks_dir().join(format!("{net}.conflist")),
        serde_json::to_string_pretty(&conflist).unwrap(),
    )
    .expect("writing the conflist");
    let listed = podman.ok(
        &lab,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    );
    assert!(
        listed.contains(&format!("{net} netyard")),
        "podman does not list the netyard network (VERSION failed?): {listed}"
    );

    let www = podman.dir.join("rootfs/www/cgi-bin");
    std::fs::create_dir_all(&www).expect("mkdir www");
    std::fs::write(www.join("who"), WHO_CGI).expect("cgi");
    cmd_ok(&["chmod", "755", &www.join("who").to_string_lossy()]);
    let image = format!("nyt{}img", lab.id);
    podman.import_busybox(&lab, &image, APPLETS);
    let image = format!("localhost/{image}");
    let cgroup = format!("/{}", podman.cgroup);
    let (c1, c2) = (format!("nyt{}web", lab.id), format!("nyt{}cli", lab.id));

    let t = Instant::now();
    podman.ok(
        &lab,
        &[
            "run",
            "-d",
            "--network",
            &net,
            "--cgroup-parent",
            &cgroup,
            "--name",
            &c1,
            "-p",
            "8080:80",
            &image,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    println!("podman run (CNI ADD) took {:?}", t.elapsed());
    podman.ok(
        &lab,
        &[
            "run",
            "-d",
            "--network",
            &net,
            "--cap-add",
            "NET_RAW",
            "--cgroup-parent",
            &cgroup,
            "--name",
            &c2,
            &image,
            "sh",
            "-c",
            IDLE,
        ],
    );
    let ep1 = lab.endpoint(&net, &c1);
    let ep2 = lab.endpoint(&net, &c2);
    let (ip1, ip2) = (
        ep1["ip"].as_str().unwrap_or_default().to_string(),
        ep2["ip"].as_str().unwrap_or_default().to_string(),
    );
    println!("{c1} = {ip1}, {c2} = {ip2}; {c1}'s ports: {}", ep1["ports"]);
    assert!(
        ep1["netns"]
            .as_str()
            .is_some_and(|n| n.starts_with("/run/netns/")),
        "{ep1}"
    );
    let inspect_ip = podman.ok(
        &lab,
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &c1,
        ],
    );
    assert_eq!(inspect_ip, ip1, "podman inspect shows the result's address");

    // Podman wrote the result's dns: the embedded resolver.
    let resolv = podman.ok(&lab, &["exec", &c2, "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 127.0.0.11"),
        "{c2}'s resolv.conf does not point at the embedded resolver:\n{resolv}"
    );
    // By name: resolve, ping, and a request whose answer shows c2's own address.
    let looked = podman.ok(&lab, &["exec", &c2, "nslookup", &c1]);
    assert!(looked.contains(&ip1), "nslookup {c1} from {c2}:\n{looked}");
    podman.ok(&lab, &["exec", &c2, "ping", "-c", "2", "-W", "3", &c1]);
    let answer = podman.ok(
        &lab,
        &[
            "exec",
            &c2,
            "sh",
            "-c",
            &format!("printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc {c1} 80"),
        ],
    );
    assert!(
        cgi_peer(&answer) == ip2,
        "{c2} -> {c1}:80 by name, answer:\n{answer}"
    );
    println!("{c2} resolves and reaches {c1} by name");

    // -p 8080:80 from the outside namespace: the container sees the client's own address.
    let url = format!("http://{}:8080/cgi-bin/who", outside.host_ip);
    let o = ns_cmd(
        &outside.ns,
        &[
            "python3",
            "-c",
            HTTP_GET,
            &outside.host_ip,
            "8080",
            "/cgi-bin/who",
        ],
        Duration::from_secs(20),
    );
    let body = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || cgi_peer(&body) != outside.ip {
        lab.fail(&format!(
            "{url} from the outside namespace ({}) did not show the client's address:\n{}",
            outside.ip,
            show(&o)
        ));
    }
    println!(
        "published 8080 -> {c1}:80 answers {url}, the container saw the client {}",
        cgi_peer(&body)
    );

    // podman rm -f: CNI DEL for both; nothing left in ps.
    let t = Instant::now();
    podman.ok(&lab, &["rm", "-f", "--time", "0", &c1, &c2]);
    println!("podman rm -f (CNI DEL) took {:?}", t.elapsed());
    let left = ps_names(&lab);
    assert!(left.is_empty(), "netyard ps after podman rm -f: {left:?}");
    println!("test body took {:?}", t_test.elapsed());
}
