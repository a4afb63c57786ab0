//! `lab up`, `lab down`, `lab ls`: the plan carried out through the API, all or nothing.
//!
//! `up` writes the lab's record (`POST /v1/labs/NAME`) before its first step and again after
//! every step, listing what exists so far; a failing step undoes the others in reverse (the
//! same code as `down`) and removes the record. If `up` itself dies half-way, the record
//! still lists what it made, `complete: false`, and `down` removes it.

use netyard_api::lab::{LabEndpoint, LabRecord, NodeInfo};

use super::plan::Plan;
use crate::client::{ApiClient, ClientError};
use crate::commands::{decode, print_json, seg, CliError};
use crate::model::NetworkUpdate;
use crate::table::render;

/// Is this a "not found" answer (already gone: fine for a teardown)?
fn gone(e: &ClientError) -> bool {
    matches!(e, ClientError::Api(_, s) if s.as_u16() == 404)
}

/// The record of lab `name`, if the daemon has one.
pub async fn record(c: &ApiClient, name: &str) -> Result<Option<LabRecord>, CliError> {
    let all: Vec<LabRecord> = decode(c.get("/v1/labs").await?)?;
    Ok(all.into_iter().find(|r| r.name == name))
}

async fn save(c: &ApiClient, rec: &LabRecord) -> Result<(), CliError> {
    c.post(&format!("/v1/labs/{}", seg(&rec.name)), rec).await?;
    Ok(())
}

/// Carries out `plan`; on failure removes everything it made and returns the failing step's
/// path in the file and the daemon's reason.
pub async fn up(c: &ApiClient, plan: &Plan, file: &str) -> Result<LabRecord, CliError> {
    if let Some(r) = record(c, &plan.name).await? {
        return Err(CliError::Usage(format!(
            "lab {:?} is up already (from {}): `netyard lab down {}` first",
            plan.name, r.file, r.name
        )));
    }
    let mut rec = LabRecord {
        name: plan.name.clone(),
        file: file.to_string(),
        ..Default::default()
    };
    save(c, &rec).await?;
    match steps(c, plan, &mut rec).await {
        Ok(()) => {
            rec.complete = true;
            save(c, &rec).await?;
            Ok(rec)
        }
        Err(e) => {
            let undone = teardown(c, &rec).await;
            let _ = c.delete(&format!("/v1/labs/{}", seg(&rec.name))).await;
            match undone {
                Ok(()) => Err(CliError::Usage(format!(
                    "{file}: {e}; nothing was left behind"
                ))),
                Err(u) => Err(CliError::Usage(format!(
                    "{file}: {e}; undoing it also failed: {u}"
                ))),
            }
        }
    }
}

async fn steps(c: &ApiClient, plan: &Plan, rec: &mut LabRecord) -> Result<(), String> {
    let at = |path: String| move |e: CliError| format!("{path}: {e}");
    for n in &plan.networks {
        c.post("/v1/networks", n)
            .await
            .map_err(CliError::from)
            .map_err(at(format!("networks.{}", n.name)))?;
        rec.networks.push(n.name.clone());
        save(c, rec).await.map_err(at("saving the lab".into()))?;
    }
    for r in &plan.routers {
        c.post("/v1/routers", r)
            .await
            .map_err(CliError::from)
            .map_err(at(format!("routers.{}", r.name)))?;
        rec.routers.push(r.name.clone());
        save(c, rec).await.map_err(at("saving the lab".into()))?;
    }
    for (net, router) in &plan.gateway_routers {
        let body = NetworkUpdate {
            gateway_router: Some(Some(router.clone())),
        };
        c.patch(&format!("/v1/networks/{}", seg(net)), &body)
            .await
            .map_err(CliError::from)
            .map_err(at(format!("networks.{net}.gateway_router")))?;
    }
    let mut pids = std::collections::BTreeMap::new();
    for n in &plan.nodes {
        let info: NodeInfo = c
            .post("/v1/nodes", n)
            .await
            .map_err(CliError::from)
            .and_then(decode)
            .map_err(at(format!("nodes.{}", n.name)))?;
        pids.insert(n.name.clone(), info.pid);
        rec.nodes.push(n.name.clone());
        save(c, rec).await.map_err(at("saving the lab".into()))?;
    }
    for a in &plan.attaches {
        let node = &a.endpoint.name;
        let index = a
            .endpoint
            .ifname
            .as_deref()
            .and_then(|i| i.strip_prefix("eth"))
            .unwrap_or("0");
        let path = format!("nodes.{node}.networks[{index}]");
        let mut ep = a.endpoint.clone();
        ep.pid = pids.get(node).and_then(|p| i32::try_from(*p).ok());
        c.post(&format!("/v1/networks/{}/endpoints", seg(&a.network)), &ep)
            .await
            .map_err(CliError::from)
            .map_err(at(path))?;
        rec.endpoints.push(LabEndpoint {
            network: a.network.clone(),
            name: node.clone(),
        });
        save(c, rec).await.map_err(at("saving the lab".into()))?;
    }
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for (node, r) in &plan.routes {
        let i = seen.entry(node.as_str()).or_default();
        let path = format!("nodes.{node}.routes[{i}]");
        *i += 1;
        c.post(&format!("/v1/nodes/{}/routes", seg(node)), r)
            .await
            .map_err(CliError::from)
            .map_err(at(path))?;
    }
    for (i, l) in plan.links.iter().enumerate() {
        c.post(
            &format!(
                "/v1/networks/{}/links/{}",
                seg(&l.network),
                seg(&l.endpoint)
            ),
            &l.settings,
        )
        .await
        .map_err(CliError::from)
        .map_err(at(format!("links[{i}]")))?;
    }
    Ok(())
}

/// Removes what `rec` lists: endpoints, nodes, routers (a network's gateway router is
/// unset first), networks (what is gone already is fine).
/// Goes on past a failure and reports every one.
pub async fn teardown(c: &ApiClient, rec: &LabRecord) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut try_delete = |r: Result<serde_json::Value, ClientError>, what: String| {
        if let Err(e) = r {
            if !gone(&e) {
                errors.push(format!("{what}: {e}"));
            }
        }
    };
    for e in rec.endpoints.iter().rev() {
        let r = c
            .delete(&format!(
                "/v1/networks/{}/endpoints/{}",
                seg(&e.network),
                seg(&e.name)
            ))
            .await;
        try_delete(r, format!("detaching {} from {}", e.name, e.network));
    }
    for n in rec.nodes.iter().rev() {
        let r = c.delete(&format!("/v1/nodes/{}", seg(n))).await;
        try_delete(r, format!("removing node {n}"));
    }
    if !rec.routers.is_empty() {
        // `router rm` refuses a router that is some network's gateway router.
        for n in &rec.networks {
            let path = format!("/v1/networks/{}", seg(n));
            let has = match c.get(&path).await {
                Ok(v) => !v["gateway_router"].is_null(),
                Err(_) => false,
            };
            if has {
                let body = NetworkUpdate {
                    gateway_router: Some(None),
                };
                let r = c.patch(&path, &body).await;
                try_delete(r, format!("unsetting the gateway router of {n}"));
            }
        }
    }
    for r in rec.routers.iter().rev() {
        let x = c.delete(&format!("/v1/routers/{}", seg(r))).await;
        try_delete(x, format!("removing router {r}"));
    }
    for n in rec.networks.iter().rev() {
        let r = c.delete(&format!("/v1/networks/{}", seg(n))).await;
        try_delete(r, format!("removing network {n}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `lab down`: removes what the record lists, then the record.
pub async fn down(c: &ApiClient, name: &str) -> Result<LabRecord, CliError> {
    let rec = record(c, name)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no lab named {name:?} is up")))?;
    teardown(c, &rec).await.map_err(|e| {
        CliError::Usage(format!(
            "lab {name}: {e} (the lab stays listed; run `lab down` again)"
        ))
    })?;
    match c.delete(&format!("/v1/labs/{}", seg(name))).await {
        Ok(_) => Ok(rec),
        Err(e) if gone(&e) => Ok(rec),
        Err(e) => Err(e.into()),
    }
}

/// `lab ls [--json]`.
pub async fn ls(c: &ApiClient, json: bool) -> Result<i32, CliError> {
    let labs: Vec<LabRecord> = decode(c.get("/v1/labs").await?)?;
    let nodes: Vec<NodeInfo> = decode(c.get("/v1/nodes").await?)?;
    if json {
        let v: Vec<serde_json::Value> = labs
            .iter()
            .map(|l| {
                let mut v = serde_json::to_value(l).unwrap_or_default();
                let mine: Vec<&NodeInfo> =
                    nodes.iter().filter(|n| l.nodes.contains(&n.name)).collect();
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "node_details".into(),
                        serde_json::to_value(mine).unwrap_or_default(),
                    );
                }
                v
            })
            .collect();
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = labs
        .iter()
        .map(|l| {
            let running = nodes
                .iter()
                .filter(|n| l.nodes.contains(&n.name) && n.running)
                .count();
            vec![
                l.name.clone(),
                if l.complete { "up" } else { "incomplete" }.to_string(),
                l.networks.join(","),
                l.routers.join(","),
                format!("{} ({running} running)", l.nodes.join(",")),
                l.file.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &["LAB", "STATE", "NETWORKS", "ROUTERS", "NODES", "FILE"],
            &rows
        )
    );
    Ok(0)
}
