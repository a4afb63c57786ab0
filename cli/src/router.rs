//! `netyard router`: routers between networks (`create`, `ls`, `inspect`, `rm`, `route
//! add|del`). Values go to the daemon as written; it checks them and names the field of a
//! bad one.

use clap::Subcommand;

use crate::client::ApiClient;
use crate::commands::{decode, print_json, seg, CliError};
use netyard_api::router::{RouteReq, RouterCreate, RouterInfo, RouterInterfaceReq};

use crate::table::render;

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Create a router with an interface on each network given.
    Create {
        name: String,
        /// NETWORK or NETWORK=IP (repeatable): an interface on NETWORK, at IP or the next
        /// free address.
        #[arg(long = "network", value_name = "NETWORK[=IP]", required = true)]
        networks: Vec<String>,
        /// Masquerade what leaves through the interface on NETWORK (repeatable).
        #[arg(long, value_name = "NETWORK")]
        nat: Vec<String>,
        /// A static route, PREFIX=VIA (repeatable; also `router route add`).
        #[arg(long = "route", value_name = "PREFIX=VIA")]
        routes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List routers.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a router as JSON: interfaces, routes, counters.
    Inspect { name: String },
    /// Remove a router.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Give a router an interface on one more network (`NETWORK` or `NETWORK=IP`).
    Connect {
        name: String,
        #[arg(value_name = "NETWORK[=IP]")]
        network: String,
    },
    /// Take a router off a network (not its only one, not while it is the network's gateway
    /// router or a static route goes through it).
    Disconnect { name: String, network: String },
    /// Static routes.
    #[command(subcommand)]
    Route(RouteCommand),
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// `route add ROUTER PREFIX via IP`: PREFIX through the neighbour IP.
    Add {
        router: String,
        prefix: String,
        /// The word `via`.
        #[arg(value_parser = ["via"])]
        via_word: String,
        via: String,
    },
    /// `route del ROUTER PREFIX`.
    Del { router: String, prefix: String },
}

pub async fn run(c: &ApiClient, cmd: RouterCommand) -> Result<i32, CliError> {
    match cmd {
        RouterCommand::Create {
            name,
            networks,
            nat,
            routes,
            json,
        } => {
            let interfaces = networks.iter().map(|n| iface_req(n)).collect();
            let routes = routes
                .iter()
                .map(|r| {
                    let (prefix, via) = r.split_once('=').unwrap_or((r.as_str(), ""));
                    RouteReq {
                        prefix: prefix.to_string(),
                        via: via.to_string(),
                    }
                })
                .collect();
            let req = RouterCreate {
                name,
                interfaces,
                nat,
                routes,
            };
            let v = c.post("/v1/routers", &req).await?;
            if json {
                print_json(&v);
            } else {
                show(&[decode(v)?]);
            }
        }
        RouterCommand::Ls { json } => {
            let v = c.get("/v1/routers").await?;
            if json {
                print_json(&v);
            } else {
                let rows: Vec<RouterInfo> = decode(v)?;
                show(&rows);
            }
        }
        RouterCommand::Inspect { name } => {
            print_json(&c.get(&format!("/v1/routers/{}", seg(&name))).await?);
        }
        RouterCommand::Rm { name } => {
            c.delete(&format!("/v1/routers/{}", seg(&name))).await?;
            println!("{name}");
        }
        RouterCommand::Connect { name, network } => {
            let v = c
                .post(
                    &format!("/v1/routers/{}/interfaces", seg(&name)),
                    &iface_req(&network),
                )
                .await?;
            show(&[decode(v)?]);
        }
        RouterCommand::Disconnect { name, network } => {
            let v = c
                .delete(&format!(
                    "/v1/routers/{}/interfaces/{}",
                    seg(&name),
                    seg(&network)
                ))
                .await?;
            show(&[decode(v)?]);
        }
        RouterCommand::Route(RouteCommand::Add {
            router,
            prefix,
            via,
            ..
        }) => {
            let v = c
                .post(
                    &format!("/v1/routers/{}/routes", seg(&router)),
                    &RouteReq { prefix, via },
                )
                .await?;
            show(&[decode(v)?]);
        }
        RouterCommand::Route(RouteCommand::Del { router, prefix }) => {
            let v = c
                .delete(&format!(
                    "/v1/routers/{}/routes/{}",
                    seg(&router),
                    seg(&prefix)
                ))
                .await?;
            show(&[decode(v)?]);
        }
    }
    Ok(0)
}

/// One line per interface, then the static routes.
/// `NETWORK` or `NETWORK=IP` as an interface request (the daemon checks both parts).
pub(crate) fn iface_req(n: &str) -> RouterInterfaceReq {
    match n.split_once('=') {
        Some((net, ip)) => RouterInterfaceReq {
            network: net.to_string(),
            ip: Some(ip.to_string()),
        },
        None => RouterInterfaceReq {
            network: n.to_string(),
            ip: None,
        },
    }
}

fn show(rows: &[RouterInfo]) {
    let mut lines = Vec::new();
    for r in rows {
        for f in &r.interfaces {
            lines.push(vec![
                r.name.clone(),
                f.network.clone(),
                format!("{}/{}", f.ip, f.subnet.split('/').nth(1).unwrap_or("")),
                f.mac.clone(),
                if f.nat { "nat" } else { "" }.to_string(),
                f.counters.forwarded.to_string(),
            ]);
        }
        for rt in &r.routes {
            lines.push(vec![
                r.name.clone(),
                rt.network.clone(),
                format!("{} via {}", rt.prefix, rt.via),
                String::new(),
                "route".to_string(),
                String::new(),
            ]);
        }
    }
    print!(
        "{}",
        render(
            &["ROUTER", "NETWORK", "ADDRESS", "MAC", "", "FORWARDED"],
            &lines
        )
    );
}
