//! `netyard demo`: an embedded daemon, a default network and two namespaces that ping each
//! other. Everything it creates is removed before it returns.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use netyard_api::model::{EndpointCreate, NetworkCreate};
use netyard_cli::nsexec;

use crate::daemon::{self, Options};
use crate::error::DaemonError;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    /// What the demo needs at run time and does not have, in one line, before it changes
    /// anything.
    #[error("demo: {0}")]
    Needs(String),
}

/// The programs the demo runs inside its namespaces, and the Debian/Ubuntu package of each.
const PROGRAMS: &[(&str, &str)] = &[("ping", "iputils-ping"), ("getent", "libc-bin")];

/// The `(program, package)` pairs of `PROGRAMS` found in no directory of `path` (a `PATH`
/// value); `exists` says whether a file is there (a parameter so tests need no files).
fn missing_programs(
    path: &OsStr,
    exists: impl Fn(&Path) -> bool,
) -> Vec<(&'static str, &'static str)> {
    PROGRAMS
        .iter()
        .filter(|(program, _)| !std::env::split_paths(path).any(|dir| exists(&dir.join(program))))
        .copied()
        .collect()
}

/// One line naming what is missing and how to install it, or None when nothing is.
fn needs_message(root: bool, missing: &[(&str, &str)]) -> Option<String> {
    let mut needs = Vec::new();
    if !root {
        needs.push("root to create network namespaces (run it with sudo)".to_string());
    }
    if !missing.is_empty() {
        let programs: Vec<&str> = missing.iter().map(|(program, _)| *program).collect();
        let packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
        needs.push(format!(
            "{} in PATH (Debian/Ubuntu: apt-get install {})",
            programs.join(" and "),
            packages.join(" ")
        ));
    }
    (!needs.is_empty()).then(|| format!("needs {}; nothing was changed", needs.join(", and ")))
}

/// Fails with one line when the demo cannot run here, before it creates anything.
fn check_needs() -> Result<(), DemoError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = missing_programs(&path, |p| p.is_file());
    match needs_message(nix::unistd::geteuid().is_root(), &missing) {
        Some(message) => Err(DemoError::Needs(message)),
        None => Ok(()),
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        context: context.to_string(),
        source,
    }
}

/// Runs the demo and prints what happens.
pub async fn run(kind: &str) -> Result<(), DemoError> {
    check_needs()?;
    let dir = std::env::temp_dir().join(format!("netyard-demo-{}", std::process::id()));
    let running = daemon::start(Options::new(dir.join("api.sock"))).await?;
    let result = scenario(&running.daemon, kind).await;
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn scenario(d: &crate::state::Daemon, kind: &str) -> Result<(), DemoError> {
    let net = d
        .create_network(NetworkCreate {
            name: "demo".into(),
            ..Default::default()
        })
        .await?;
    println!(
        "network demo: subnet {} gateway {} mtu {}",
        net.subnet, net.gateway, net.mtu
    );
    let ns1 = nsexec::new_netns().map_err(io("creating namespace c1"))?;
    let ns2 = nsexec::new_netns().map_err(io("creating namespace c2"))?;
    for (name, ns) in [("c1", &ns1), ("c2", &ns2)] {
        let e = d
            .attach(
                "demo",
                EndpointCreate {
                    name: name.into(),
                    netns: Some(nsexec::fd_path(ns)),
                    kind: Some(kind.into()),
                    ..Default::default()
                },
            )
            .await?;
        println!(
            "attached {name}: {} {}/{} mac {} ({})",
            e.ifname, e.ip, e.prefix_len, e.mac, e.kind
        );
    }
    // The namespaces' /etc/resolv.conf points at the embedded resolver (bind-mounted for the
    // command only), so they find each other by name.
    let resolv =
        std::env::temp_dir().join(format!("netyard-demo-{}.resolv.conf", std::process::id()));
    std::fs::write(&resolv, crate::dnsd::resolv_conf()).map_err(io("writing resolv.conf"))?;
    let mut ok = true;
    for (from, ns, to) in [("c1", &ns1, "c2"), ("c2", &ns2, "c1")] {
        println!("\n{from}$ getent hosts {to} && ping -c 3 {to}");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("getent hosts {to} && ping -c 3 -i 0.2 -W 2 {to}"),
        ]);
        nsexec::enter_before_exec(&mut cmd, ns, Some(&resolv)).map_err(io("preparing ping"))?;
        let status = cmd
            .status()
            .map_err(io("running ping (is iputils-ping installed?)"))?;
        ok &= status.success();
    }
    let _ = std::fs::remove_file(&resolv);
    println!("\nMAC table of demo:");
    for row in d.fdb("demo").await? {
        println!("  {}  {}  {:.1}s", row.mac, row.port, row.age);
    }
    println!("\nper-port counters:");
    for s in d.stats().await {
        println!(
            "  {}: rx {} pkts / {} B, tx {} pkts / {} B, drops {}",
            s.endpoint,
            s.counters.rx_packets,
            s.counters.rx_bytes,
            s.counters.tx_packets,
            s.counters.tx_bytes,
            s.counters.drops_total
        );
    }
    if ok {
        println!(
            "demo: c1 and c2 found each other by name and pinged through netyard; cleaning up"
        );
        Ok(())
    } else {
        Err(DemoError::Failed(
            "demo: ping between c1 and c2 failed".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_any_path_directory() {
        let exists = |p: &Path| p == Path::new("/usr/bin/getent") || p == Path::new("/bin/ping");
        assert!(missing_programs(OsStr::new("/usr/bin:/bin"), exists).is_empty());
        assert_eq!(
            missing_programs(OsStr::new("/usr/bin"), exists),
            vec![("ping", "iputils-ping")]
        );
        assert_eq!(
            missing_programs(OsStr::new(""), exists).len(),
            PROGRAMS.len()
        );
    }

    #[test]
    fn one_line_names_what_is_missing_and_its_package() {
        assert_eq!(needs_message(true, &[]), None);
        assert_eq!(
            needs_message(true, &[("ping", "iputils-ping")]).as_deref(),
            Some("needs ping in PATH (Debian/Ubuntu: apt-get install iputils-ping); nothing was changed")
        );
        let both = needs_message(false, &[("ping", "iputils-ping")]).unwrap_or_default();
        assert!(both.starts_with("needs root"), "{both}");
        assert!(both.contains("apt-get install iputils-ping"), "{both}");
        assert!(!both.contains('\n'));
    }
}
