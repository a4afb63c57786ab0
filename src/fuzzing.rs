//! Entry points of every fuzz target (`fuzz/fuzz_targets/`, one line each): the daemon's own
//! parsers here, the data plane's re-exported from the crates that own them. Each takes the
//! fuzzer's bytes and must never panic; each checks invariants callers rely on (a panic is a
//! finding). `tests/fuzz_regressions.rs` replays the stored inputs of `fuzz/regressions/`
//! on stable through these same functions, so a crash once found stays fixed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use netyard_api::model::{EndpointCreate, FdbAdd, NetworkCreate, PublishRequest};

use crate::ipam::Ipam;
use crate::plan::{plan_endpoint, plan_network, Taken};
use crate::spec::StateSpec;

pub use netyard_dns::fuzzing::query as dns_query;
pub use netyard_router::fuzzing::{gateway_ingest, tcp_conn};
pub use netyard_switch::fuzzing::{frame_path, gso_segment, vxlan_decap, wire_views};

/// A fuzz target's function: the fuzzer's bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression test (the directory names of
/// `fuzz/regressions/`, the file names of `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_path", frame_path),
    ("gso_segment", gso_segment),
    ("vxlan_decap", vxlan_decap),
    ("wire_views", wire_views),
    ("gateway_ingest", gateway_ingest),
    ("tcp_conn", tcp_conn),
    ("dns_query", dns_query),
    ("api_json", api_json),
    ("docker_portspec", docker_portspec),
    ("state_file", state_file),
    ("cni_config", cni_config),
    ("slirp4netns_api", slirp4netns_api),
];

/// The API's JSON bodies as the daemon reads them (`api::parse_body`: field named by path),
/// then planned as the daemon plans them: `data[0]` picks the request, the rest is the body.
/// A network or endpoint the planner accepts must be one the state file takes back.
pub fn api_json(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let body = axum::body::Bytes::copy_from_slice(body);
    match which % 5 {
        0 => {
            let Ok(req) = crate::api::parse_body::<NetworkCreate>(&body) else {
                return;
            };
            let Ok(spec) = plan_network(&req, std::iter::empty(), &[], None) else {
                return;
            };
            let json = serde_json::to_vec(&spec).unwrap_or_default();
            let back: crate::spec::NetworkSpec = serde_json::from_slice(&json)
                .unwrap_or_else(|e| panic!("a planned network the state file refuses: {e}"));
            assert_eq!(back, spec);
        }
        1 => {
            let Ok(req) = crate::api::parse_body::<EndpointCreate>(&body) else {
                return;
            };
            let net = NetworkCreate {
                name: "lab".into(),
                subnet: Some("10.1.0.0/24".into()),
                ..NetworkCreate::default()
            };
            let Ok(net) = plan_network(&net, std::iter::empty(), &[], None) else {
                panic!("the fixed network plans");
            };
            let ipam = Ipam::new(net.subnet, net.gateway);
            let taken = Taken {
                names: BTreeSet::from(["web".to_string()]),
                macs: BTreeSet::new(),
                remote_static: Vec::new(),
            };
            let _ = plan_endpoint(&req, &net, &ipam, &taken);
        }
        2 => {
            if let Ok(req) = crate::api::parse_body::<PublishRequest>(&body) {
                for spec in &req.publish {
                    let _ = netyard_api::portspec::parse(spec);
                }
            }
        }
        3 => {
            let _ = crate::api::parse_body::<FdbAdd>(&body);
        }
        _ => {
            let _ = crate::api::parse_body::<netyard_api::model::FreeSubnetRequest>(&body);
        }
    }
}

/// Docker's `-p` SPEC (`[ip:][hostport:]containerport[/proto]`, ranges): a SPEC that parses
/// prints back to one that parses to the same thing.
pub fn docker_portspec(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = netyard_api::portspec::parse(s) else {
        return;
    };
    let printed = spec.to_string();
    let again = netyard_api::portspec::parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, spec, "{s:?} printed as {printed:?}");
    assert_eq!(spec.requests().len(), spec.count());
}

/// The state file (`store::decode`): anything but a valid file is an error naming the field;
/// a valid one saves back to a file that loads to the same state.
pub fn state_file(data: &[u8]) {
    let path = Path::new("/fuzz/state.json");
    let Ok(state) = crate::store::decode::<StateSpec>(path, data) else {
        return;
    };
    let saved = crate::store::encode(&state).unwrap_or_else(|e| panic!("encode: {e}"));
    let back = crate::store::decode::<StateSpec>(path, &saved)
        .unwrap_or_else(|e| panic!("a loaded state that does not load once saved: {e}"));
    assert_eq!(back, state);
}

/// A CNI plugin's stdin (the network configuration, `prevResult` and `runtimeConfig`), then
/// the network it asks for, planned as the daemon plans it.
pub fn cni_config(data: &[u8]) {
    let _ = crate::plugins::cni::config::version_asked(data);
    let Ok(conf) = crate::plugins::cni::config::parse_conf(data) else {
        return;
    };
    let _ = plan_network(&conf.network, std::iter::empty(), &[], None);
}

/// slirp4netns's API socket: one JSON request (`add_hostfwd`, `list_hostfwd`,
/// `remove_hostfwd`), checked against a table that holds one forward already.
pub fn slirp4netns_api(data: &[u8]) {
    use crate::fronts::slirp4netns::api::{error_reply, parse_request, Guest, Request, Table};
    let guest = Guest {
        v4: Ipv4Addr::new(10, 0, 2, 100),
        v6: Some(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100)),
    };
    let mut table = Table::new(guest);
    if let Ok(Request::Add(first)) = parse_request(br#"{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 8080, "guest_port": 80}}"#) {
        if let Ok(f) = table.check_add(&first) {
            table.commit_add(f);
        }
    }
    match parse_request(data) {
        Err(e) => {
            let reply = error_reply(&e);
            assert!(serde_json::from_str::<serde_json::Value>(&reply).is_ok());
            assert!(
                reply.len() < 4096 + data.len().min(4096),
                "an error reply that grows with the input"
            );
        }
        Ok(Request::Add(r)) => {
            if let Ok(f) = table.check_add(&r) {
                table.commit_add(f);
                assert!(table.check_add(&r).is_err(), "the same forward twice");
            }
        }
        Ok(Request::List) => {
            let _ = table.list();
        }
        Ok(Request::Remove(id)) => {
            if let Ok(f) = table.find(id) {
                table.commit_remove(f.id);
            }
        }
    }
}
