//! `netyard exec NODE -- CMD`: a command in a node's namespaces (`/v1/nodes`), entered as
//! `run` enters one: `setns` in the forked child just before exec. A node of a rootless
//! daemon has a user namespace of its own, joined first (the caller must be the daemon's
//! user). The command gets the node's resolv.conf (the embedded resolver at 127.0.0.11) when
//! the node is on a network, bind-mounted in a mount namespace of its own (root daemons only:
//! in a node's own user namespace the mount would be refused).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;

use netyard_api::lab::NodeInfo;
use nix::sched::{setns, CloneFlags};

use crate::client::ApiClient;
use crate::commands::{decode, seg, CliError};
use crate::model::EndpointInfo;

fn open_ns(pid: u32, kind: &str) -> io::Result<OwnedFd> {
    let p = format!("/proc/{pid}/ns/{kind}");
    std::fs::File::open(&p)
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {p}: {e}")))
}

/// Opens the node's namespaces and checks the pid is still the node's holder.
fn node_namespaces(n: &NodeInfo) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    let user = if n.userns {
        Some(open_ns(n.pid, "user")?)
    } else {
        None
    };
    let net = open_ns(n.pid, "net")?;
    // Opened first, checked after: the fds name the holder's namespaces only if the pid was
    // still the holder once they were open.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", n.pid)).unwrap_or_default();
    let start = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_ascii_whitespace().nth(19))
        .and_then(|s| s.parse::<u64>().ok());
    if start != Some(n.pid_start) {
        return Err(io::Error::other(format!(
            "node {}'s process {} is gone (is the node's daemon in another PID namespace?)",
            n.name, n.pid
        )));
    }
    Ok((net, user))
}

pub async fn exec(c: &ApiClient, node: &str, argv: &[String]) -> Result<i32, CliError> {
    let n: NodeInfo = decode(c.get(&format!("/v1/nodes/{}", seg(node))).await?)?;
    let (net, user) = node_namespaces(&n).map_err(|source| CliError::Io {
        context: format!("entering node {node}"),
        source,
    })?;
    let eps: Vec<EndpointInfo> = decode(c.get("/v1/endpoints").await?)?;
    let resolv_text = eps
        .iter()
        .find(|e| e.name == n.name && !e.resolv_conf.is_empty())
        .map(|e| e.resolv_conf.clone())
        .filter(|_| user.is_none());
    let resolv = std::env::temp_dir().join(format!(
        "netyard-exec-{}-{}.resolv.conf",
        std::process::id(),
        n.name
    ));
    let resolv_path = match &resolv_text {
        Some(t) => {
            std::fs::write(&resolv, t).map_err(|source| CliError::Io {
                context: format!("writing {}", resolv.display()),
                source,
            })?;
            Some(resolv.as_path())
        }
        None => None,
    };
    let r = run(&net, user, argv, resolv_path).await;
    if resolv_path.is_some() {
        let _ = std::fs::remove_file(&resolv);
    }
    r
}

async fn run(
    net: &OwnedFd,
    user: Option<OwnedFd>,
    argv: &[String],
    resolv: Option<&std::path::Path>,
) -> Result<i32, CliError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| CliError::Usage("no command given".into()))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    if let Some(u) = user {
        // SAFETY: runs in the forked child before exec and only calls setns(2), which is
        // async-signal-safe, on an fd the closure owns. The user namespace comes first: the
        // network namespace belongs to it.
        unsafe {
            cmd.pre_exec(move || {
                setns(u.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(io::Error::from)?;
                Ok(())
            });
        }
    }
    crate::nsexec::enter_before_exec(&mut cmd, net, resolv).map_err(|source| CliError::Io {
        context: "preparing the command".into(),
        source,
    })?;
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| CliError::Io {
            context: format!("starting {prog}"),
            source,
        })?;
    let status = child.wait().await.map_err(|source| CliError::Io {
        context: format!("waiting for {prog}"),
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
