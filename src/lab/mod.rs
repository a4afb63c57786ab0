//! Nodes and labs in the daemon.
//!
//! A *node* is a network namespace the daemon owns, held by a process of its own
//! (`netyard node-init`, [`init`]) that runs the node's command and starts it again when it
//! exits (restart "always", the default, with a back-off; "never" leaves the namespace
//! without a command). The namespace lives as long as that holder, so a crashing command never
//! takes its interfaces with it; endpoints are attached to a node by the holder's pid (as
//! `attach --pid`), so the reaper detaches them if the holder is killed. A daemon without
//! CAP_SYS_ADMIN (rootless) gets a user namespace of its own per node, in which it is root.
//!
//! A *lab* record is the list of what `netyard lab up` made (networks, nodes, endpoints,
//! routers), written by the CLI after each step, so `lab down` removes exactly that.
//!
//! Both are kept in `labs.json` in the state directory (replaced atomically after every
//! change): a persistent daemon leaves nodes running when it stops, as it leaves endpoints,
//! and takes them back at start when the holder pid still has its recorded start time. An
//! ephemeral daemon ends its nodes when it stops, and its holders end themselves when it dies
//! without stopping (`node-init --parent`).

pub mod init;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netyard_api::lab::{LabRecord, NodeCreate, NodeInfo, NodeRoute};
use tokio::io::AsyncBufReadExt;

/// How long a holder has to make its namespaces and say "ready".
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a holder has to end its command and exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("no node named {0:?}")]
    NoNode(String),
    #[error("no lab named {0:?}")]
    NoLab(String),
    #[error("{0}")]
    Conflict(String),
    #[error("starting node {name:?}: {reason}")]
    Start { name: String, reason: String },
    #[error("node {node:?}: {reason}")]
    Route { node: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl LabError {
    fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> LabError {
        LabError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            LabError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    #[serde(default)]
    nodes: BTreeMap<String, NodeInfo>,
    #[serde(default)]
    labs: BTreeMap<String, LabRecord>,
}

#[derive(Debug, Default)]
struct Inner {
    saved: Saved,
    /// Names of nodes being started (reserved, not listed yet).
    starting: BTreeSet<String>,
}

/// The daemon's nodes and lab records.
#[derive(Debug, Default)]
pub struct Labs {
    inner: Arc<Mutex<Inner>>,
    /// `labs.json` of a persistent daemon.
    file: Option<PathBuf>,
}

/// A name of a node or a lab: what endpoint and network names allow.
pub fn check_name(field: &str, name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LabError::invalid(
            field,
            format!("{name:?} is not a name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)"),
        ))
    }
}

/// Checks a node request (pure): name, restart policy, sysctls.
pub fn check_node(req: &NodeCreate) -> Result<bool, LabError> {
    check_name("name", &req.name)?;
    if let Some(l) = &req.lab {
        check_name("lab", l)?;
    }
    let restart = match req.restart.as_deref() {
        None | Some("always") => true,
        Some("never") => false,
        Some(r) => {
            return Err(LabError::invalid(
                "restart",
                format!("{r:?} is not one of always, never"),
            ))
        }
    };
    for (k, v) in &req.sysctls {
        init::sysctl_path(k).map_err(|e| LabError::invalid(format!("sysctls.{k}"), e))?;
        if v.is_empty() || v.len() > 256 || v.contains(['\n', '\0']) {
            return Err(LabError::invalid(
                format!("sysctls.{k}"),
                format!("{v:?} is not a sysctl value"),
            ));
        }
    }
    if req.command.first().is_some_and(|c| c.is_empty()) {
        return Err(LabError::invalid("command[0]", "the program is empty"));
    }
    Ok(restart)
}

fn alive(n: &NodeInfo) -> bool {
    crate::netns::start_time(n.pid).is_ok_and(|t| t == n.pid_start) && !zombie(n.pid)
}

fn zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    matches!(
        stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
        Some('Z') | Some('X')
    )
}

fn own_userns(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = ino(format!("/proc/{pid}/ns/user"));
    theirs.is_some() && theirs != ino("/proc/self/ns/user".into())
}

impl Labs {
    /// Nodes and labs kept in `file` (None: in memory only, an ephemeral daemon).
    pub fn new(file: Option<PathBuf>) -> Labs {
        Labs {
            inner: Default::default(),
            file,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, inner: &Inner) -> Result<(), LabError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let io = |source| LabError::Io {
            context: format!("writing {}", file.display()),
            source,
        };
        let tmp = file.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&inner.saved).unwrap_or_default();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, file).map_err(io)
    }

    /// Takes back the nodes and labs of `labs.json` at start: a node whose holder is gone
    /// (or whose pid is another process now) is forgotten, with a log line.
    pub fn restore(&self) -> Result<(), LabError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(LabError::Io {
                    context: format!("reading {}", file.display()),
                    source,
                })
            }
        };
        let mut saved: Saved = serde_json::from_slice(&text)
            .map_err(|e| LabError::invalid(file.display().to_string(), e))?;
        saved.nodes.retain(|name, n| {
            let ok = alive(n);
            if !ok {
                tracing::warn!(node = %name, pid = n.pid, "node's holder process is gone; forgotten");
            }
            ok
        });
        let mut inner = self.lock();
        inner.saved = saved;
        self.persist(&inner)
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        let inner = self.lock();
        inner
            .saved
            .nodes
            .values()
            .map(|n| NodeInfo {
                running: alive(n),
                ..n.clone()
            })
            .collect()
    }

    pub fn node(&self, name: &str) -> Result<NodeInfo, LabError> {
        let inner = self.lock();
        let n = inner
            .saved
            .nodes
            .get(name)
            .ok_or_else(|| LabError::NoNode(name.into()))?;
        Ok(NodeInfo {
            running: alive(n),
            ..n.clone()
        })
    }

    /// Starts a node: its holder process makes the namespaces and runs the command.
    pub async fn create_node(&self, req: NodeCreate) -> Result<NodeInfo, LabError> {
        let restart = check_node(&req)?;
        {
            let mut inner = self.lock();
            if inner.saved.nodes.contains_key(&req.name) || inner.starting.contains(&req.name) {
                return Err(LabError::Conflict(format!(
                    "name: a node named {:?} exists",
                    req.name
                )));
            }
            inner.starting.insert(req.name.clone());
        }
        let r = self.start_holder(&req, restart).await;
        let (info, saved) = {
            let mut inner = self.lock();
            inner.starting.remove(&req.name);
            let info = r?;
            inner.saved.nodes.insert(info.name.clone(), info.clone());
            let saved = self.persist(&inner);
            if saved.is_err() {
                inner.saved.nodes.remove(&info.name);
            }
            (info, saved)
        };
        if let Err(e) = saved {
            stop_holder(&info).await;
            return Err(e);
        }
        tracing::info!(node = %info.name, pid = info.pid, userns = info.userns, "node started");
        Ok(info)
    }

    async fn start_holder(&self, req: &NodeCreate, restart: bool) -> Result<NodeInfo, LabError> {
        let fail = |reason: String| LabError::Start {
            name: req.name.clone(),
            reason,
        };
        let mut c = tokio::process::Command::new("/proc/self/exe");
        c.arg("node-init")
            .arg("--name")
            .arg(&req.name)
            .arg("--restart")
            .arg(if restart { "always" } else { "never" });
        if self.file.is_none() {
            // An ephemeral daemon's nodes end with it, even when it is SIGKILLed.
            c.arg("--parent").arg(std::process::id().to_string());
        }
        for (k, v) in &req.sysctls {
            c.arg("--sysctl").arg(format!("{k}={v}"));
        }
        c.arg("--").args(&req.command);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            // Its own session: a terminal's Ctrl-C to the daemon does not reach the nodes.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = c.spawn().map_err(|e| fail(format!("node-init: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| fail("node-init exited at once".into()))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => {
                let mut r = tokio::io::BufReader::new(out);
                tokio::time::timeout(READY_TIMEOUT, r.read_line(&mut line)).await
            }
            None => Ok(Ok(0)),
        };
        let ready = matches!(read, Ok(Ok(_))) && line.trim() == "ready";
        if !ready {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let why = match read {
                Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
                _ => line
                    .trim()
                    .strip_prefix("error: ")
                    .unwrap_or(line.trim())
                    .to_string(),
            };
            return Err(fail(if why.is_empty() {
                "node-init exited".into()
            } else {
                why
            }));
        }
        let pid_start = crate::netns::start_time(pid).map_err(|e| fail(e.to_string()))?;
        // Reaps the holder when it exits (it is our child until this daemon stops).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(NodeInfo {
            name: req.name.clone(),
            lab: req.lab.clone(),
            command: req.command.clone(),
            sysctls: req.sysctls.clone(),
            restart: if restart { "always" } else { "never" }.into(),
            pid,
            pid_start,
            userns: own_userns(pid),
            running: true,
        })
    }

    /// Ends a node: its command, then its holder (and with it the namespaces).
    pub async fn remove_node(&self, name: &str) -> Result<NodeInfo, LabError> {
        let info = {
            let mut inner = self.lock();
            let n = inner
                .saved
                .nodes
                .remove(name)
                .ok_or_else(|| LabError::NoNode(name.into()))?;
            if let Err(e) = self.persist(&inner) {
                inner.saved.nodes.insert(name.to_string(), n);
                return Err(e);
            }
            n
        };
        stop_holder(&info).await;
        tracing::info!(node = %name, "node removed");
        Ok(info)
    }

    /// Ends every node (an ephemeral daemon's stop, `system reset`) and forgets the labs.
    pub async fn remove_all(&self) {
        let nodes: Vec<NodeInfo> = {
            let mut inner = self.lock();
            let n = std::mem::take(&mut inner.saved.nodes);
            inner.saved.labs.clear();
            let _ = self.persist(&inner);
            n.into_values().collect()
        };
        futures::future::join_all(nodes.iter().map(stop_holder)).await;
    }

    /// Adds a static route in the node's namespace (through a netlink socket made there, the
    /// way attach configures an endpoint, so a rootless node's user namespace is joined too).
    pub async fn add_route(&self, name: &str, req: &NodeRoute) -> Result<(), LabError> {
        let to: ipnet::Ipv4Net = req.to.parse().map_err(|_| {
            LabError::invalid(
                "to",
                format!("{:?} is not an IPv4 prefix such as 10.1.2.0/24", req.to),
            )
        })?;
        let via: std::net::Ipv4Addr = req.via.parse().map_err(|_| {
            LabError::invalid("via", format!("{:?} is not an IPv4 address", req.via))
        })?;
        let n = self.node(name)?;
        let fail = |reason: String| LabError::Route {
            node: name.to_string(),
            reason,
        };
        let target = crate::netns::NsTarget::from_pid(n.pid).map_err(|e| fail(e.to_string()))?;
        let fds = crate::netns::open_in_ns(&target, crate::netns::NsOpenRequest::netlink_only())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let handle = fds.netlink.into_handle().map_err(|e| fail(e.to_string()))?;
        let msg = rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(to.network(), to.prefix_len())
            .gateway(via)
            .build();
        // Replaced, not added: a router on the node's network may have given it a route to
        // the same prefix already; the file's route is the one asked for.
        handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| fail(format!("route {to} via {via}: {e}")))
    }

    pub fn labs(&self) -> Vec<LabRecord> {
        self.lock().saved.labs.values().cloned().collect()
    }

    pub fn put_lab(&self, name: &str, mut rec: LabRecord) -> Result<LabRecord, LabError> {
        check_name("name", name)?;
        rec.name = name.to_string();
        let mut inner = self.lock();
        let old = inner.saved.labs.insert(name.to_string(), rec.clone());
        if let Err(e) = self.persist(&inner) {
            match old {
                Some(o) => inner.saved.labs.insert(name.to_string(), o),
                None => inner.saved.labs.remove(name),
            };
            return Err(e);
        }
        Ok(rec)
    }

    pub fn remove_lab(&self, name: &str) -> Result<LabRecord, LabError> {
        let mut inner = self.lock();
        let old = inner
            .saved
            .labs
            .remove(name)
            .ok_or_else(|| LabError::NoLab(name.into()))?;
        if let Err(e) = self.persist(&inner) {
            inner.saved.labs.insert(name.to_string(), old);
            return Err(e);
        }
        Ok(old)
    }
}

/// SIGTERM to the holder (which ends its command), SIGKILL after [`STOP_TIMEOUT`]; returns
/// once it is gone.
async fn stop_holder(n: &NodeInfo) {
    use nix::sys::signal::{kill, Signal};
    if !alive(n) {
        return;
    }
    let Ok(raw) = i32::try_from(n.pid) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(raw);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while alive(n) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(node = %n.name, pid = n.pid, "node did not stop; killing it");
            let _ = kill(pid, Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while alive(n) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_requests_are_checked_by_field() {
        let ok = NodeCreate {
            name: "r1".into(),
            command: vec!["sleep".into(), "1".into()],
            ..Default::default()
        };
        assert_eq!(check_node(&ok).ok(), Some(true));
        let field = |f: &dyn Fn(&mut NodeCreate)| {
            let mut r = ok.clone();
            f(&mut r);
            check_node(&r)
                .err()
                .and_then(|e| e.field().map(str::to_string))
        };
        assert_eq!(field(&|r| r.name = "-x".into()).as_deref(), Some("name"));
        assert_eq!(
            field(&|r| r.restart = Some("often".into())).as_deref(),
            Some("restart")
        );
        assert_eq!(
            field(&|r| {
                r.sysctls.insert("kernel.pid_max".into(), "1".into());
            })
            .as_deref(),
            Some("sysctls.kernel.pid_max")
        );
        assert_eq!(
            field(&|r| {
                r.sysctls
                    .insert("net.ipv4.ip_forward".into(), "1\n2".into());
            })
            .as_deref(),
            Some("sysctls.net.ipv4.ip_forward")
        );
        assert_eq!(
            field(&|r| r.command = vec![String::new()]).as_deref(),
            Some("command[0]")
        );
        let mut never = ok.clone();
        never.restart = Some("never".into());
        assert_eq!(check_node(&never).ok(), Some(false));
    }
}
