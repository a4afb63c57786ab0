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

use std::time::Instant;

use common::podman::*;
use common::*;
use serde_json::json;

/// The busybox applets the containers use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "nc", "cat", "nslookup", "ping", "ip", "hostname", "echo",
];

#[test]
fn podman_containers_on_a_netyard_cni_network_resolve_reach_and_publish() {
    require_root();
    require_podman();
    require_program("python3", "python3");
    let t_test = Instant::now();

    let mut lab = Lab::bare();
    let podman = Podman::with_netyard_plugin(
        &mut lab,
        |dir| {
            format!(
                "network_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]",
                dir.display()
            )
        },
        "",
    );
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

    let image = podman.import_web_image(&lab, &format!("nyt{}img", lab.id), APPLETS);
    let (c1, c2) = (format!("nyt{}web", lab.id), format!("nyt{}cli", lab.id));

    let t = Instant::now();
    podman.run_web_and_client(&lab, &net, &image, (&c1, &c2), "8080:80");
    println!("podman run of both (CNI ADD) took {:?}", t.elapsed());
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

    // Podman wrote the result's dns, the embedded resolver; by name: resolve, ping, and a
    // request whose answer shows c2's own address.
    podman.check_by_name(&lab, (&c1, &c2), "127.0.0.11", (&ip1, &ip2));
    println!("{c2} resolves and reaches {c1} by name");

    // -p 8080:80 from the outside namespace: the container sees the client's own address.
    let body = fetch_published(&lab, &outside, 8080);
    println!(
        "published 8080 -> {c1}:80 answers, the container saw the client {}",
        cgi_peer(&body)
    );

    // podman rm -f: CNI DEL for both; nothing left in ps.
    let t = Instant::now();
    podman.rm_leaves_nothing(&lab, &[&c1, &c2]);
    println!("podman rm -f (CNI DEL) took {:?}", t.elapsed());
    println!("test body took {:?}", t_test.elapsed());
}
