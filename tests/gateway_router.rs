//! Issue 18: a router as a network's gateway, and routers joining and leaving networks.
//!
//! - `network create B --gateway-router R=IP`: the router, which already sits on network A,
//!   gets an interface on the new network B and is B's endpoints' default gateway, so an
//!   endpoint on B reaches A's endpoint with no route added by hand (ping TTL 63: one
//!   router), and A's endpoint got its route to B through R when R joined B;
//! - an unknown gateway router names the option and leaves no network behind;
//! - `router disconnect` is refused while R is B's gateway router, and for R's only network;
//!   after `network update --no-gateway-router` it takes R off B and A's route to B is gone;
//! - `router connect` to a network R is already on is refused naming the field.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn ping1(ns: &str, ip: &str) -> String {
    let o = ns_cmd(
        ns,
        &["ping", "-n", "-c", "1", "-W", "2", ip],
        Duration::from_secs(20),
    );
    show(&o)
}

#[test]
fn a_new_network_takes_an_existing_router_as_its_gateway() {
    let lab = Lab::new();
    let sa = Subnet::random();
    let sb = sa.other();
    let id = &lab.id;
    let (na, nb) = (format!("ga{id}"), format!("gb{id}"));
    lab.network(&na, &sa, &[]);
    let ns_a = lab.ns("a");
    let ns_b = lab.ns("b");
    lab.attach(&na, &ns_a, "ea", &["--ip", &sa.ip(10)]);
    let r = format!("gr{id}");
    lab.ny_ok(&[
        "router",
        "create",
        &r,
        "--network",
        &format!("{na}={}", sa.ip(254)),
    ]);

    // An unknown router: the option is named and the network is not kept.
    let bad = format!("gx{id}");
    let o = lab.ny(&[
        "network",
        "create",
        &bad,
        "--subnet",
        &sb.cidr(),
        "--gateway-router",
        "nosuchrouter",
    ]);
    assert_one_line_error(
        "network create --gateway-router nosuchrouter",
        &o,
        &["gateway_router"],
    );
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    assert!(
        !nets.to_string().contains(&bad),
        "a refused --gateway-router left network {bad}: {nets}"
    );

    // The real one.
    let rb = sb.ip(254);
    let out = lab.ny_ok(&[
        "network",
        "create",
        &nb,
        "--subnet",
        &sb.cidr(),
        "--gateway-router",
        &format!("{r}={rb}"),
    ]);
    assert!(
        out.contains(&rb),
        "network create did not report the gateway router: {out}"
    );
    let inspect = lab.ny_json(&["network", "inspect", &nb]);
    assert_eq!(
        inspect["gateway_router"],
        Value::from(r.clone()),
        "{inspect}"
    );
    assert_eq!(
        inspect["gateway_router_ip"],
        Value::from(rb.clone()),
        "{inspect}"
    );
    let router = lab.ny_json(&["router", "inspect", &r]);
    let ifaces = router["interfaces"].as_array().cloned().unwrap_or_default();
    assert_eq!(ifaces.len(), 2, "the router did not join {nb}: {router}");

    lab.attach(&nb, &ns_b, "eb", &["--ip", &sb.ip(10)]);
    let def = cmd_ok(&["ip", "-n", &ns_b, "-4", "route", "show", "default"]);
    assert!(
        def.contains(&format!("via {rb}")),
        "B's endpoint's default route is not via the router {rb}: {def}"
    );
    // A's endpoint got its route to B through R when R joined B.
    let routes_a = cmd_ok(&["ip", "-n", &ns_a, "-4", "route", "show"]);
    assert!(
        routes_a.contains(&format!("{} via {}", sb.cidr(), sa.ip(254))),
        "A's endpoint has no route to {} via the router: {routes_a}",
        sb.cidr()
    );
    let p = ping1(&ns_b, &sa.ip(10));
    assert!(
        p.contains("1 received") && p.contains("ttl=63"),
        "B's endpoint could not reach A's through its gateway router (want ttl=63):\n{p}"
    );

    // Connecting again, disconnecting the gateway router or the only network: refused.
    let o = lab.ny(&["router", "connect", &r, &nb]);
    assert_one_line_error("router connect again", &o, &["network"]);
    let o = lab.ny(&["router", "disconnect", &r, &nb]);
    assert_one_line_error(
        "router disconnect of the gateway router",
        &o,
        &["gateway router"],
    );
    let still = lab.ny_json(&["router", "inspect", &r]);
    assert_eq!(
        still["interfaces"].as_array().map(Vec::len),
        Some(2),
        "{still}"
    );

    // Unset, then disconnect: A's route to B goes, B's endpoint has netyard's gateway.
    lab.ny_ok(&["network", "update", &nb, "--no-gateway-router"]);
    lab.ny_ok(&["router", "disconnect", &r, &nb]);
    let routes_a = cmd_ok(&["ip", "-n", &ns_a, "-4", "route", "show"]);
    assert!(
        !routes_a.contains(&sb.cidr()),
        "A's endpoint kept a route to {} after the router left it: {routes_a}",
        sb.cidr()
    );
    let o = lab.ny(&["router", "disconnect", &r, &na]);
    assert_one_line_error("router disconnect of the only network", &o, &["network"]);
    let after = lab.ny_json(&["router", "inspect", &r]);
    assert_eq!(
        after["interfaces"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    // The router still answers on A after being made again.
    let p = ping1(&ns_a, &sa.ip(254));
    assert!(
        p.contains("1 received"),
        "the router stopped answering on A:\n{p}"
    );
}
