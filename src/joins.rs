//! `netyard run --network container:NAME`: runs that share an endpoint's network namespace.
//!
//! Such a run is not an endpoint (it adds no port and changes nothing in the namespace), but
//! `ps` lists it with kind `container` and its target's addresses while it runs, as Docker
//! lists a container of `--network container:X`. The daemon keeps the registration in memory
//! only: it ends with `DELETE /v1/joins/{name}`, or when the process that made it exits (the
//! API connection's peer, watched with a pidfd), so a run killed with SIGKILL is not listed
//! forever. A daemon restart forgets every registration (the runs go on, unlisted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::DaemonError;
use crate::spec::EndpointSpec;

/// One registered run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Tells two registrations of one name apart (the watcher of an old one must not remove
    /// the new one).
    pub id: u64,
    pub name: String,
    pub target: String,
    /// The target's namespace (`EndpointSpec::ns_key`).
    pub ns_key: (u64, u64),
}

/// The registrations, shared with their watcher tasks.
#[derive(Debug, Default, Clone)]
pub struct Joins {
    inner: Arc<Mutex<BTreeMap<String, Joined>>>,
    next: Arc<AtomicU64>,
}

impl Joins {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Joined>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `name`; a conflict when a registration of that name exists.
    pub fn add(&self, name: &str, target: &str, ns_key: (u64, u64)) -> Result<Joined, DaemonError> {
        let mut m = self.map();
        if m.contains_key(name) {
            return Err(DaemonError::conflict(
                Some("name"),
                format!("a run named {name:?} already joins a container"),
            ));
        }
        let j = Joined {
            id: self.next.fetch_add(1, Relaxed),
            name: name.to_string(),
            target: target.to_string(),
            ns_key,
        };
        m.insert(name.to_string(), j.clone());
        Ok(j)
    }

    /// Forgets `name`; false if it was not registered.
    pub fn remove(&self, name: &str) -> bool {
        self.map().remove(name).is_some()
    }

    /// Forgets registration `id` if it is still there (its process exited).
    pub fn remove_id(&self, id: u64) {
        self.map().retain(|_, j| j.id != id);
    }

    pub fn list(&self) -> Vec<Joined> {
        self.map().values().cloned().collect()
    }
}

/// Picks the endpoint a `container:TARGET` run joins among the endpoints named TARGET (one per
/// network it is on, as `(network, spec)`): they must exist, have a namespace netyard entered
/// (not a veth handed to Docker) and all be in one namespace. Errors name the field `target`.
pub fn pick_target<'a>(
    target: &str,
    candidates: &[(&'a str, &'a EndpointSpec)],
) -> Result<&'a EndpointSpec, DaemonError> {
    let Some((_, first)) = candidates.first() else {
        return Err(DaemonError::invalid(
            "target",
            format!("no endpoint named {target:?}"),
        ));
    };
    if let Some((net, _)) = candidates.iter().find(|(_, e)| e.handed_over()) {
        return Err(DaemonError::invalid(
            "target",
            format!(
                "{target:?} on network {net:?} was handed to its runtime: netyard does not \
                 know its namespace"
            ),
        ));
    }
    if let Some((net, _)) = candidates
        .iter()
        .find(|(_, e)| e.ns_key() != first.ns_key())
    {
        return Err(DaemonError::invalid(
            "target",
            format!(
                "{target:?} names endpoints of different namespaces (networks {:?} and {net:?})",
                candidates[0].0
            ),
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::NsIdentity;
    use crate::spec::PortKindName;

    fn ep(ino: u64, peer: bool) -> EndpointSpec {
        EndpointSpec {
            name: "web".into(),
            kind: PortKindName::Tap,
            ip: "10.1.0.2".parse().unwrap(),
            ip6: None,
            mac: "02:42:0a:01:00:02".parse().unwrap(),
            ifname: "eth0".into(),
            netns: "/run/netns/web".into(),
            userns: None,
            pid: None,
            identity: NsIdentity {
                dev: 4,
                ino,
                pid: None,
                pid_start: None,
            },
            host_ifname: None,
            peer: peer.then(|| "nydx".to_string()),
            offload: true,
            trusted: false,
            aliases: vec![],
            published: vec![],
            owner: None,
            link: Default::default(),
        }
    }

    #[test]
    fn the_target_must_exist_be_entered_and_be_one_namespace() {
        let (a, b, other, docker) = (ep(7, false), ep(7, false), ep(8, false), ep(7, true));
        assert_eq!(pick_target("web", &[("lan", &a), ("db", &b)]).unwrap(), &a);
        for bad in [
            &[][..],
            &[("lan", &a), ("db", &other)],
            &[("lan", &a), ("dk", &docker)],
        ] {
            let e = pick_target("web", bad).unwrap_err();
            assert_eq!(e.field(), Some("target"), "{e}");
        }
    }

    #[test]
    fn a_registration_is_forgotten_by_name_or_by_its_id_only() {
        let j = Joins::default();
        let first = j.add("side", "web", (4, 7)).unwrap();
        assert_eq!(
            j.add("side", "web", (4, 7)).unwrap_err().field(),
            Some("name")
        );
        assert!(j.remove("side"));
        let second = j.add("side", "web", (4, 7)).unwrap();
        // The first run's watcher fires late: the second registration stays.
        j.remove_id(first.id);
        assert_eq!(j.list(), vec![second.clone()]);
        j.remove_id(second.id);
        assert!(j.list().is_empty());
        assert!(!j.remove("side"));
    }
}
