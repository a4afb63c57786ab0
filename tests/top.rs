//! `netyard top` (issue 17) against a real daemon in a test namespace, with two endpoints and
//! a ping stream between them: `--once --json` names the endpoints and shows the stream's
//! rate; the live view, driven through a pseudo-terminal (portable-pty) and read back as a
//! screen (vt100), shows the endpoint names and an egress flow, and `q`, Ctrl-C or SIGTERM
//! end it with status 0 and the terminal restored (the alternate screen left).

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use portable_pty::{native_pty_system, Child, CommandBuilder, PtySize};
use serde_json::Value;

/// A lab with network `n<id>`, endpoints `web<id>` and `db<id>`, a ping stream (20 per
/// second) from web to db and one (10 per second) from web to an "outside" namespace through
/// the gateway's egress (a flow), until the lab ends.
fn lab_with_traffic() -> (Lab, String, String, String) {
    let lab = Lab::new();
    let net = lab.network(&format!("n{}", lab.id), &Subnet::random(), &[]);
    let (web, db) = (format!("web{}", lab.id), format!("db{}", lab.id));
    let (ns_w, ns_d) = (lab.ns("w"), lab.ns("d"));
    lab.attach(&net, &ns_w, &web, &[]);
    let db_ep = lab.attach(&net, &ns_d, &db, &[]);
    let db_ip = db_ep["ip"].as_str().expect("db's address").to_string();
    lab.assert_ping(&ns_w, &db_ip);
    lab.bg_in(
        &ns_w,
        &["ping", "-n", "-q", "-i", "0.05", &db_ip],
        "ping.log",
    );
    let outside = lab.outside();
    lab.assert_ping(&ns_w, &outside.ip);
    lab.bg_in(
        &ns_w,
        &["ping", "-n", "-q", "-i", "0.1", &outside.ip],
        "egress.log",
    );
    (lab, net, web, db)
}

fn port<'a>(reading: &'a Value, net: &str, name: &str) -> &'a Value {
    reading["ports"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["network"] == net && p["endpoint"] == name)
        })
        .unwrap_or_else(|| panic!("no port {net}/{name} in {reading:#}"))
}

#[test]
fn once_json_names_the_endpoints_and_shows_the_traffic() {
    let (lab, net, web, db) = lab_with_traffic();
    let reading = lab.ny_json(&["top", "--once", "--json", "--interval", "0.5"]);
    let interval = reading["interval_s"].as_f64().unwrap_or(0.0);
    assert!(
        (0.5..5.0).contains(&interval),
        "interval_s {interval}: {reading:#}"
    );
    assert!(
        reading["sampling"]
            .as_str()
            .is_some_and(|s| s.contains("two samples") && s.contains("--interval 0.5")),
        "the reading does not say how it was sampled: {reading:#}"
    );
    let w = port(&reading, &net, &web);
    let d = port(&reading, &net, &db);
    let web_ip = lab.endpoint(&net, &web)["ip"].clone();
    assert_eq!(w["ip"], web_ip, "{w}");
    assert_eq!(w["kind"], "tap", "{w}");
    // web's pings enter the switch from web's port and leave through db's; the replies the
    // other way.
    for (p, key) in [
        (w, "rx_packets_per_s"),
        (w, "rx_bytes_per_s"),
        (d, "tx_packets_per_s"),
        (d, "rx_packets_per_s"),
    ] {
        assert!(
            p[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} is not above zero while the ping stream flows: {p}"
        );
    }
    assert!(port(&reading, &net, "(gateway)")["kind"] == "gateway");
    // The egress ping is a flow, named by its endpoint.
    let flows = reading["flows"].as_array().cloned().unwrap_or_default();
    assert!(
        flows.iter().any(|f| f["endpoint"] == web.as_str()
            && f["protocol"] == "icmp"
            && f["packets_per_s"].as_f64().is_some_and(|v| v > 0.0)),
        "no busy ICMP flow of {web} in {reading:#}"
    );
    assert!(
        reading["dns"]["queries_per_s"].is_number(),
        "no DNS rate: {reading:#}"
    );
    // Without --json: the same tables as text.
    let text = lab.ny_ok(&["top", "--once", "--interval", "0.2"]);
    for needle in [&web, &db, "RX PKT/S", "BUSIEST FLOWS", "queries/s"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    // The live view refuses to run without a terminal, saying what to use instead.
    let o = lab.ny(&["top"]);
    assert_one_line_error("top without a terminal", &o, &["terminal", "--once --json"]);
}

/// The live view in a pseudo-terminal, its screen kept up to date by a reader thread.
struct Live {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(lab: &Lab) -> Live {
        let pty = native_pty_system();
        let pair = pty
            .openpty(PtySize {
                rows: 40,
                cols: 150,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("opening a pseudo-terminal");
        let mut cmd = CommandBuilder::new(NETYARD);
        cmd.arg("--api");
        cmd.arg(&lab.api);
        cmd.args(["top", "--interval", "0.3"]);
        cmd.env("TERM", "xterm-256color");
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("starting netyard top on the pseudo-terminal");
        drop(pair.slave);
        let mut out = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(40, 150, 0)));
        let feed = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EOF or EIO once the program and every copy of the terminal closed.
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().expect("screen").process(&buf[..n]);
            }
        });
        // The master stays open through `writer` and the reader's clone.
        drop(pair.master);
        Live {
            child,
            writer,
            screen,
            reader: Some(reader),
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    fn wait_for(&self, lab: &Lab, needles: &[&str]) {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            let c = self.contents();
            needles.iter().all(|n| c.contains(n))
        });
        if !ok {
            lab.fail(&format!(
                "the live view did not show {needles:?} within 20 s; its screen:\n{}",
                self.contents()
            ));
        }
    }

    /// Types `keys` (or sends a signal) and waits (up to 10 s) for the program to exit;
    /// returns its status.
    fn end(&mut self, lab: &Lab, how: &End) -> portable_pty::ExitStatus {
        match how {
            End::Keys(keys) => {
                self.writer
                    .write_all(keys)
                    .expect("typing into the terminal");
                self.writer.flush().expect("flush");
            }
            End::Signal(sig) => {
                let pid = self.child.process_id().expect("the program's pid");
                let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
                nix::sys::signal::kill(pid, *sig).expect("signalling netyard top");
            }
        }
        let mut status = None;
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            lab.fail(&format!(
                "netyard top did not exit within 10 s of {how:?}; its screen:\n{}",
                self.contents()
            ))
        });
        // Everything it wrote before exiting is on the screen once the reader is done.
        drop(std::mem::replace(
            &mut self.writer,
            Box::new(std::io::sink()),
        ));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

/// How a test ends the live view.
#[derive(Debug)]
enum End {
    Keys(&'static [u8]),
    Signal(nix::sys::signal::Signal),
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_live_view_shows_the_endpoints_and_q_ctrl_c_or_sigterm_end_it() {
    let (lab, net, web, db) = lab_with_traffic();
    for how in [
        End::Keys(b"q"),
        End::Keys(b"\x03"),
        End::Signal(nix::sys::signal::Signal::SIGTERM),
    ] {
        let mut live = Live::start(&lab);
        live.wait_for(
            &lab,
            &[&net, &web, &db, "(gateway)", "DNS", "queries/s", "icmp"],
        );
        let status = live.end(&lab, &how);
        assert!(
            status.success(),
            "netyard top ended with {status:?} on {how:?}; its screen:\n{}",
            live.contents()
        );
        let parser = live.screen.lock().expect("screen");
        let screen = parser.screen();
        assert!(
            !screen.alternate_screen() && !screen.hide_cursor(),
            "the terminal was not restored after {how:?} (alternate screen {}, cursor hidden {})",
            screen.alternate_screen(),
            screen.hide_cursor()
        );
    }
}
