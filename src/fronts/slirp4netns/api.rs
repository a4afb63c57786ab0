//! slirp4netns's API socket: one JSON request per connection (the client half-closes or
//! simply sends one object), one JSON reply, then the connection is closed.
//!
//! ```text
//! {"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "0.0.0.0",
//!   "host_port": 8080, "guest_addr": "10.0.2.100", "guest_port": 80}}  -> {"return": {"id": 1}}
//! {"execute": "list_hostfwd"}          -> {"return": {"entries": [{"id": 1, "proto": "tcp", ...}]}}
//! {"execute": "remove_hostfwd", "arguments": {"id": 1}}               -> {"return": {}}
//! anything wrong                        -> {"error": {"desc": "bad request: ..."}}
//! ```
//!
//! Ids count from 1 and are never reused. Podman omits `guest_addr` (or sends ""): the
//! guest's .100. With `-6` (netyard's extension: slirp4netns 1.2 takes IPv4 only) an IPv6
//! `host_addr` such as "::" forwards IPv6 clients to the guest's fd00::100, each shown as
//! itself; without `-6` it is refused as slirp4netns refuses it. A forward is a published port of the engine's endpoint (Docker SPEC
//! `HOST_ADDR:HOST_PORT:GUEST_PORT/PROTO`), so its TCP connections reach the container from
//! the client's own address, as slirp4netns's do. Parsing and the table are pure; [`serve`]
//! does the I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::fronts::engine::Engine;

/// slirp4netns reads a request into a 4096-byte buffer; one that fills it is refused.
pub const MAX_REQUEST: usize = 4096;
/// A client that neither completes its JSON nor closes its side within this is answered
/// with what it sent.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused request: slirp4netns's `desc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(pub String);

fn bad(s: &str) -> ApiError {
    ApiError(format!("bad request: {s}"))
}

/// One forward as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRequest {
    pub udp: bool,
    pub host_addr: IpAddr,
    pub host_port: u16,
    /// None: the guest's address of the host address's family.
    pub guest_addr: Option<IpAddr>,
    pub guest_port: u16,
}

/// A request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Add(AddRequest),
    List,
    Remove(i64),
}

/// An installed forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hostfwd {
    pub id: u32,
    pub udp: bool,
    pub host_addr: IpAddr,
    pub host_port: u16,
    pub guest_addr: IpAddr,
    pub guest_port: u16,
}

impl Hostfwd {
    /// The Docker SPEC the engine publishes it as.
    pub fn spec(&self) -> String {
        let host = match self.host_addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        format!(
            "{}:{}:{}/{}",
            host,
            self.host_port,
            self.guest_port,
            if self.udp { "udp" } else { "tcp" }
        )
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "proto": if self.udp { "udp" } else { "tcp" },
            "host_addr": self.host_addr.to_string(),
            "host_port": self.host_port,
            "guest_addr": self.guest_addr.to_string(),
            "guest_port": self.guest_port,
        })
    }
}

/// A port number argument: parson reads a missing or non-number field as 0, which
/// slirp4netns refuses; so is anything outside 1-65535.
fn port(args: Option<&Value>, field: &str, what: &str) -> Result<u16, ApiError> {
    args.and_then(|a| a.get(field))
        .and_then(Value::as_f64)
        .filter(|n| n.fract() == 0.0 && (1.0..=65535.0).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| bad(&format!("{what}: bad arguments.{field}")))
}

fn addr(args: Option<&Value>, field: &str) -> Result<Option<IpAddr>, ApiError> {
    match args.and_then(|a| a.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(&format!("add_hostfwd: bad arguments.{field}"))),
        Some(_) => Err(bad(&format!("add_hostfwd: bad arguments.{field}"))),
    }
}

/// Parses one request (the bytes the client sent).
pub fn parse_request(buf: &[u8]) -> Result<Request, ApiError> {
    if buf.len() >= MAX_REQUEST {
        return Err(bad("too large message"));
    }
    let v: Value = serde_json::from_slice(buf).map_err(|_| bad("cannot parse JSON"))?;
    let Some(o) = v.as_object() else {
        return Err(bad("json_object() failed"));
    };
    let Some(execute) = o.get("execute").and_then(Value::as_str) else {
        return Err(bad("no execute found"));
    };
    let args = o.get("arguments");
    match execute {
        "add_hostfwd" => {
            let udp = match args.and_then(|a| a.get("proto")).and_then(Value::as_str) {
                Some("tcp") => false,
                Some("udp") => true,
                _ => return Err(bad("add_hostfwd: bad arguments.proto")),
            };
            let host_addr = addr(args, "host_addr")?.unwrap_or(Ipv4Addr::UNSPECIFIED.into());
            let host_port = port(args, "host_port", "add_hostfwd")?;
            let guest_addr = addr(args, "guest_addr")?;
            let guest_port = port(args, "guest_port", "add_hostfwd")?;
            Ok(Request::Add(AddRequest {
                udp,
                host_addr,
                host_port,
                guest_addr,
                guest_port,
            }))
        }
        "list_hostfwd" => Ok(Request::List),
        "remove_hostfwd" => {
            let id = args
                .and_then(|a| a.get("id"))
                .and_then(Value::as_f64)
                .filter(|n| n.fract() == 0.0)
                .map(|n| n as i64)
                .unwrap_or(0);
            Ok(Request::Remove(id))
        }
        _ => Err(bad("unknown execute")),
    }
}

/// The guest's addresses: the only ones a forward may target (one container per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub v4: Ipv4Addr,
    /// With `-6`.
    pub v6: Option<Ipv6Addr>,
}

/// The forwards, with the next id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    next_id: u32,
    entries: Vec<Hostfwd>,
    guest: Guest,
}

impl Table {
    pub fn new(guest: Guest) -> Table {
        Table {
            next_id: 1,
            entries: Vec::new(),
            guest,
        }
    }

    /// The forward an add would install (its id the next one), or why not: an IPv6 host
    /// address without `-6` (slirp4netns's own parse error), a guest address that is not
    /// the guest's of the host address's family (its clients reach that one), or the same
    /// protocol, host address and port as an installed one (slirp's own refusal,
    /// "slirp_add_hostfwd failed").
    pub fn check_add(&self, r: &AddRequest) -> Result<Hostfwd, ApiError> {
        let failed = || bad("add_hostfwd: slirp_add_hostfwd failed");
        let guest = match r.host_addr {
            IpAddr::V4(_) => IpAddr::V4(self.guest.v4),
            IpAddr::V6(_) => match self.guest.v6 {
                Some(g) => IpAddr::V6(g),
                None => return Err(bad("add_hostfwd: bad arguments.host_addr")),
            },
        };
        let guest_addr = r.guest_addr.unwrap_or(guest);
        if guest_addr != guest {
            return Err(failed());
        }
        if self
            .entries
            .iter()
            .any(|e| e.udp == r.udp && e.host_addr == r.host_addr && e.host_port == r.host_port)
        {
            return Err(failed());
        }
        Ok(Hostfwd {
            id: self.next_id,
            udp: r.udp,
            host_addr: r.host_addr,
            host_port: r.host_port,
            guest_addr,
            guest_port: r.guest_port,
        })
    }

    /// Installs a checked forward; its reply.
    pub fn commit_add(&mut self, f: Hostfwd) -> String {
        self.next_id = f.id + 1;
        self.entries.push(f);
        json!({"return": {"id": f.id}}).to_string()
    }

    /// The forward an id names.
    pub fn find(&self, id: i64) -> Result<Hostfwd, ApiError> {
        self.entries
            .iter()
            .find(|e| i64::from(e.id) == id)
            .copied()
            .ok_or_else(|| bad("remove_hostfwd: bad arguments.id"))
    }

    /// Removes it; the reply.
    pub fn commit_remove(&mut self, id: u32) -> String {
        self.entries.retain(|e| e.id != id);
        json!({"return": {}}).to_string()
    }

    pub fn list(&self) -> String {
        let entries: Vec<Value> = self.entries.iter().map(Hostfwd::json).collect();
        json!({"return": {"entries": entries}}).to_string()
    }
}

/// An error reply.
pub fn error_reply(e: &ApiError) -> String {
    json!({"error": {"desc": e.0}}).to_string()
}

/// Serves the API socket until the task is aborted. Requests are handled one at a time (a
/// forward is bound before the next request is read, as slirp4netns's single loop does).
pub async fn serve(listener: UnixListener, engine: Arc<Engine>, guest: Guest) {
    let table = Arc::new(Mutex::new(Table::new(guest)));
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let (engine, table) = (engine.clone(), table.clone());
        tokio::spawn(async move {
            handle(conn, &engine, &table).await;
        });
    }
}

/// Reads until the client closes its side, the bytes form one JSON value, or the buffer is
/// full.
async fn read_request(conn: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() >= MAX_REQUEST || serde_json::from_slice::<Value>(&buf).is_ok() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, read).await;
    buf
}

async fn handle(mut conn: UnixStream, engine: &Engine, table: &Mutex<Table>) {
    let buf = read_request(&mut conn).await;
    tracing::info!(request = %String::from_utf8_lossy(&buf).trim(), "api_handler: got request");
    let reply = match parse_request(&buf) {
        Err(e) => error_reply(&e),
        Ok(Request::List) => table.lock().await.list(),
        Ok(Request::Add(r)) => {
            let mut t = table.lock().await;
            match t.check_add(&r) {
                Err(e) => error_reply(&e),
                Ok(f) => match engine.publish(&[f.spec()]).await {
                    Ok(_) => t.commit_add(f),
                    Err(e) => {
                        eprintln!("netyard slirp4netns: add_hostfwd {}: {e}", f.spec());
                        error_reply(&bad("add_hostfwd: slirp_add_hostfwd failed"))
                    }
                },
            }
        }
        Ok(Request::Remove(id)) => {
            let mut t = table.lock().await;
            match t.find(id) {
                Err(e) => error_reply(&e),
                Ok(f) => match engine.unpublish(&f.spec()).await {
                    Ok(_) => t.commit_remove(f.id),
                    Err(e) => {
                        eprintln!("netyard slirp4netns: remove_hostfwd {}: {e}", f.spec());
                        error_reply(&bad("remove_hostfwd: slirp_remove_hostfwd failed"))
                    }
                },
            }
        }
    };
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
    const V4_ONLY: Guest = Guest {
        v4: GUEST,
        v6: None,
    };

    fn desc(r: Result<Request, ApiError>) -> String {
        match r {
            Err(e) => e.0,
            Ok(r) => panic!("accepted: {r:?}"),
        }
    }

    #[test]
    fn malformed_requests_get_slirp4netns_errors() {
        assert_eq!(
            desc(parse_request(b"badjson\n")),
            "bad request: cannot parse JSON"
        );
        assert_eq!(desc(parse_request(b"")), "bad request: cannot parse JSON");
        assert_eq!(
            desc(parse_request(b"[1]")),
            "bad request: json_object() failed"
        );
        assert_eq!(
            desc(parse_request(br#"{"unexpectedjson": 42}"#)),
            "bad request: no execute found"
        );
        assert_eq!(
            desc(parse_request(br#"{"execute": "bad"}"#)),
            "bad request: unknown execute"
        );
        assert_eq!(
            desc(parse_request(
                br#"{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}"#
            )),
            "bad request: add_hostfwd: bad arguments.proto"
        );
        assert_eq!(
            desc(parse_request(&[b' '; MAX_REQUEST])),
            "bad request: too large message"
        );
        let add = |args: &str| {
            desc(parse_request(
                format!(r#"{{"execute":"add_hostfwd","arguments":{args}}}"#).as_bytes(),
            ))
        };
        assert_eq!(
            add(r#"{"proto":"tcp","guest_port":80}"#),
            "bad request: add_hostfwd: bad arguments.host_port"
        );
        assert_eq!(
            add(r#"{"proto":"tcp","host_port":70000,"guest_port":80}"#),
            "bad request: add_hostfwd: bad arguments.host_port"
        );
        assert_eq!(
            add(r#"{"proto":"udp","host_port":8080}"#),
            "bad request: add_hostfwd: bad arguments.guest_port"
        );
        assert_eq!(
            add(r#"{"proto":"tcp","host_addr":"::x","host_port":1,"guest_port":2}"#),
            "bad request: add_hostfwd: bad arguments.host_addr"
        );
        assert_eq!(
            add(r#"{"proto":"tcp","host_port":1,"guest_addr":"x","guest_port":2}"#),
            "bad request: add_hostfwd: bad arguments.guest_addr"
        );
        assert_eq!(
            error_reply(&bad("unknown execute")),
            r#"{"error":{"desc":"bad request: unknown execute"}}"#
        );
    }

    #[test]
    fn podman_and_rootlesskit_requests_parse() {
        // Podman 4.3: no guest_addr field at all... and RootlessKit's guest address.
        let p = parse_request(
            br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}
"#,
        );
        assert_eq!(
            p,
            Ok(Request::Add(AddRequest {
                udp: false,
                host_addr: Ipv4Addr::UNSPECIFIED.into(),
                host_port: 8080,
                guest_addr: None,
                guest_port: 80
            }))
        );
        let r = parse_request(
            br#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}}"#,
        );
        assert!(matches!(r, Ok(Request::Add(a)) if a.udp && a.guest_addr == Some(GUEST.into())));
        assert_eq!(
            parse_request(br#"{"execute":"remove_hostfwd","arguments":{"id":3}}"#),
            Ok(Request::Remove(3))
        );
        assert_eq!(
            parse_request(br#"{"execute": "list_hostfwd"}"#),
            Ok(Request::List)
        );
    }

    #[test]
    fn ids_count_from_1_and_the_table_lists_and_removes() {
        let mut t = Table::new(V4_ONLY);
        let req = AddRequest {
            udp: false,
            host_addr: Ipv4Addr::UNSPECIFIED.into(),
            host_port: 8080,
            guest_addr: None,
            guest_port: 80,
        };
        let f = t.check_add(&req).unwrap();
        assert_eq!(f.spec(), "0.0.0.0:8080:80/tcp");
        assert_eq!(t.commit_add(f), r#"{"return":{"id":1}}"#);
        // The same host port again is slirp's own refusal; UDP on it is another forward.
        assert_eq!(
            t.check_add(&req).unwrap_err().0,
            "bad request: add_hostfwd: slirp_add_hostfwd failed"
        );
        let other = AddRequest {
            guest_addr: Some(Ipv4Addr::new(10, 0, 2, 5).into()),
            host_port: 9,
            ..req
        };
        assert!(t.check_add(&other).is_err());
        let u = t.check_add(&AddRequest { udp: true, ..req }).unwrap();
        assert_eq!(u.id, 2);
        assert_eq!(u.spec(), "0.0.0.0:8080:80/udp");
        t.commit_add(u);
        let list: Value = serde_json::from_str(&t.list()).unwrap();
        assert_eq!(list["return"]["entries"][0]["id"], 1);
        assert_eq!(list["return"]["entries"][0]["proto"], "tcp");
        assert_eq!(list["return"]["entries"][0]["host_addr"], "0.0.0.0");
        assert_eq!(list["return"]["entries"][0]["host_port"], 8080);
        assert_eq!(list["return"]["entries"][0]["guest_addr"], "10.0.2.100");
        assert_eq!(list["return"]["entries"][0]["guest_port"], 80);
        assert_eq!(list["return"]["entries"][1]["proto"], "udp");
        assert_eq!(
            t.find(9).unwrap_err().0,
            "bad request: remove_hostfwd: bad arguments.id"
        );
        let f = t.find(1).unwrap();
        assert_eq!(t.commit_remove(f.id), r#"{"return":{}}"#);
        assert!(t.find(1).is_err());
        // Ids are never reused.
        let f = t.check_add(&req).unwrap();
        assert_eq!(f.id, 3);
    }

    #[test]
    fn ipv6_host_addresses_forward_to_the_guests_ipv6_address_only_with_dash_6() {
        let add = |args: &str| match parse_request(
            format!(r#"{{"execute":"add_hostfwd","arguments":{args}}}"#).as_bytes(),
        ) {
            Ok(Request::Add(a)) => a,
            other => panic!("{args}: {other:?}"),
        };
        let any6 = add(r#"{"proto":"tcp","host_addr":"::","host_port":8080,"guest_port":80}"#);
        // slirp4netns 1.2 (and netyard without -6) refuses it as it cannot parse it.
        assert_eq!(
            Table::new(V4_ONLY).check_add(&any6).unwrap_err().0,
            "bad request: add_hostfwd: bad arguments.host_addr"
        );
        let g6: Ipv6Addr = "fd00::100".parse().unwrap();
        let mut t = Table::new(Guest {
            v4: GUEST,
            v6: Some(g6),
        });
        let f = t.check_add(&any6).unwrap();
        assert_eq!(f.guest_addr, IpAddr::V6(g6));
        assert_eq!(f.spec(), "[::]:8080:80/tcp");
        t.commit_add(f);
        // The IPv4 forward on the same port is another one, to the IPv4 address.
        let any4 = add(r#"{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_port":80}"#);
        let f4 = t.check_add(&any4).unwrap();
        assert_eq!((f4.id, f4.guest_addr), (2, IpAddr::V4(GUEST)));
        t.commit_add(f4);
        // A guest address of the other family, or a second "::" on the port: refused.
        let crossed = add(
            r#"{"proto":"tcp","host_addr":"::1","host_port":9,"guest_addr":"10.0.2.100","guest_port":80}"#,
        );
        assert!(t.check_add(&crossed).is_err());
        assert!(t.check_add(&any6).is_err());
        let given = add(
            r#"{"proto":"udp","host_addr":"::1","host_port":9,"guest_addr":"fd00::100","guest_port":53}"#,
        );
        assert_eq!(t.check_add(&given).unwrap().spec(), "[::1]:9:53/udp");
        let list: Value = serde_json::from_str(&t.list()).unwrap();
        assert_eq!(list["return"]["entries"][0]["host_addr"], "::");
        assert_eq!(list["return"]["entries"][0]["guest_addr"], "fd00::100");
    }
}
