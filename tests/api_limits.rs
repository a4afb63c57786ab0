//! The API's bounds, through its socket as any client sees them: body size (413 in the JSON
//! error shape), bad input quoted only in part, wrong types naming the field, unusable subnets,
//! capture durations, `ifname` reasons, idle and slow clients timed out, the socket's mode.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends `head` then `body` on a fresh connection (a thread writes, so a server that answers
/// before reading everything cannot deadlock us) and returns the status and the JSON body.
fn raw(api: &Path, head: String, body: Vec<u8>) -> (u16, Value, usize) {
    let mut s = UnixStream::connect(api).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        // The server may close once it has answered: a failed write is expected then.
        let _ = w
            .write_all(head.as_bytes())
            .and_then(|_| w.write_all(&body));
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {:?}", &text[..text.len().min(300)]));
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // A chunked reply: the JSON is the first chunk.
    let json = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        json.split("\r\n").nth(1).unwrap_or("")
    } else {
        json
    };
    let v = serde_json::from_str(json).unwrap_or(Value::Null);
    (status, v, out.len())
}

fn request(api: &Path, method: &str, path: &str, body: &[u8]) -> (u16, Value, usize) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: netyard\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw(api, head, body.to_vec())
}

/// Asserts the JSON error shape: `error` text, `field` as given.
fn assert_error(what: &str, got: &(u16, Value, usize), status: u16, field: Option<&str>) {
    assert_eq!(got.0, status, "{what}: {:?}", got.1);
    assert!(
        got.1["error"].is_string(),
        "{what}: not the JSON error shape: {:?}",
        got.1
    );
    assert_eq!(got.1["field"].as_str(), field, "{what}: {:?}", got.1);
}

#[test]
fn bodies_names_types_subnets_and_durations_are_bounded() {
    let lab = Lab::new();
    let api = lab.api.clone();

    // Over 1 MiB, declared: 413 before the body is read.
    let big = vec![b' '; (1 << 20) + 1];
    let r = request(&api, "POST", "/v1/networks", &big);
    assert_error("declared 1 MiB + 1", &r, 413, None);
    // Over 1 MiB, chunked (no length given): 413 once the bound is crossed.
    let mut chunked = Vec::new();
    for _ in 0..24 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65_536).as_bytes());
        chunked.extend_from_slice(&[b' '; 65_536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/networks HTTP/1.1\r\nHost: netyard\r\nTransfer-Encoding: chunked\r\n\
                Connection: close\r\n\r\n"
        .to_string();
    assert_error("chunked 1.5 MiB", &raw(&api, head, chunked), 413, None);

    // A 900 kB name: refused naming the field, quoted only in part.
    let huge = "a".repeat(900_000);
    let body = serde_json::to_vec(&serde_json::json!({ "name": huge })).unwrap();
    let r = request(&api, "POST", "/v1/networks", &body);
    assert_error("900 kB name", &r, 400, Some("name"));
    assert!(r.2 < 2_000, "the reply to a 900 kB name is {} bytes", r.2);
    let e = r.1["error"].as_str().unwrap_or("");
    assert!(e.contains("900000 bytes long, at most 64"), "{e}");

    // Wrong types name the field, even deep; a huge wrong-type value is not echoed whole.
    let r = request(
        &api,
        "POST",
        "/v1/networks",
        br#"{"name":"n1","mtu":"big"}"#,
    );
    assert_error("mtu as a string", &r, 400, Some("mtu"));
    let body = serde_json::to_vec(&serde_json::json!({ "name": "n1", "mtu": huge })).unwrap();
    let r = request(&api, "POST", "/v1/networks", &body);
    assert_error("900 kB mtu", &r, 400, Some("mtu"));
    assert!(r.2 < 2_000, "the reply to a 900 kB mtu is {} bytes", r.2);

    // Unusable subnets, named.
    for (subnet, what) in [
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("0.0.0.0/8", "this network"),
    ] {
        let body =
            serde_json::to_vec(&serde_json::json!({"name": "n1", "subnet": subnet})).unwrap();
        let r = request(&api, "POST", "/v1/networks", &body);
        assert_error(subnet, &r, 400, Some("subnet"));
        let e = r.1["error"].as_str().unwrap_or("");
        assert!(e.contains(subnet) && e.contains(what), "{subnet}: {e}");
    }

    // Capture durations: NaN, overflow to infinity and negatives are refused by name.
    let sn = Subnet::random();
    lab.network("cap", &sn, &[]);
    for s in ["NaN", "1e400", "-1", "inf", "0"] {
        let r = request(
            &api,
            "GET",
            &format!("/v1/networks/cap/capture?seconds={s}"),
            b"",
        );
        assert_error(&format!("seconds={s}"), &r, 400, Some("seconds"));
    }

    // ifname: why it is refused.
    let ns = lab.ns("a");
    let netns = format!("/run/netns/{ns}");
    cmd_ok(&[
        "ip", "-n", &ns, "link", "add", "taken0", "type", "veth", "peer", "name", "taken1",
    ]);
    for (ifname, why) in [
        ("lo", "loopback"),
        ("abcdefghijklmnop", "at most 15"),
        ("a/b", "'/'"),
        ("taken0", "exists"),
    ] {
        let body = serde_json::to_vec(
            &serde_json::json!({"name": "e1", "netns": netns, "ifname": ifname}),
        )
        .unwrap();
        let r = request(&api, "POST", "/v1/networks/cap/endpoints", &body);
        assert!(r.0 >= 400, "{ifname}: {:?}", r.1);
        let e = r.1["error"].as_str().unwrap_or("");
        assert!(e.contains(why), "ifname {ifname:?}: {e}");
    }
    // Nothing was left behind by the refused attaches.
    let eps = lab.ny_json(&["ps", "--json"]);
    assert_eq!(eps.as_array().map(Vec::len), Some(0), "{eps}");
}

#[test]
fn idle_and_slow_clients_are_timed_out_and_the_socket_is_0600() {
    let lab = Lab::new();
    let api = lab.api.clone();
    let mode = std::fs::metadata(&api).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "API socket mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(api.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".netyard-api"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directory left: {leftovers:?}"
    );

    // 200 clients that connect and send nothing, 100 that send half a request: more than the
    // 256 connections the daemon holds at once. They must be closed, and a new request
    // answered (once the first ones timed out: within a bound, not at once).
    let start = Instant::now();
    let mut held = Vec::new();
    for i in 0..300 {
        let mut s = UnixStream::connect(&api).expect("connect");
        if i >= 200 {
            let _ = s.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n");
        }
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        held.push(s);
    }
    let r = request(&api, "GET", "/v1/ping", b"");
    assert_eq!(r.0, 200, "{:?}", r.1);
    let answered = start.elapsed();
    let mut closed = 0;
    for mut s in held {
        let mut b = [0u8; 512];
        // EOF, or a 408 reply then EOF: either way the daemon let go.
        loop {
            match s.read(&mut b) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed += 1;
                    break;
                }
                Err(e) => panic!("an idle client was not closed: {e}"),
            }
        }
    }
    assert_eq!(closed, 300);
    eprintln!(
        "300 idle clients: a new request answered after {answered:?}, all closed after {:?}",
        start.elapsed()
    );

    // A slow body: headers promise 100 bytes, 10 arrive; the daemon answers 408 in JSON.
    let mut s = UnixStream::connect(&api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\":\"",
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(lab.daemon_running(), "the daemon died");
}
