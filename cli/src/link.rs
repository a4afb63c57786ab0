//! `netyard link`: a link's impairment and carrier (`set`, `show`, `reset`, `down`, `up`).
//! The values go to the daemon as written (`20ms`, `1%`, `10mbit`): it parses and checks them,
//! and names the field of a bad one.

use clap::{Args, Subcommand};

use crate::client::ApiClient;
use crate::commands::{decode, print_json, seg, CliError};
use crate::model::{LinkInfo, LinkSettings, LinkWayCounters};
use crate::table::render;

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Impair a link: replaces the impairment of the direction given (a value left out is
    /// off, as with `tc qdisc replace ... netem`). ENDPOINT is an endpoint of NETWORK or
    /// `vxlan` (its tunnel).
    Set {
        network: String,
        endpoint: String,
        #[command(flatten)]
        settings: Box<SetArgs>,
    },
    /// Show links: every one, a network's, or one.
    Show {
        network: Option<String>,
        endpoint: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Clear a link: no impairment either way, carrier on.
    Reset { network: String, endpoint: String },
    /// Carrier off: every frame either way is dropped (counted `link_down`).
    Down { network: String, endpoint: String },
    /// Carrier on again.
    Up { network: String, endpoint: String },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// out: what the endpoint sends (as netem on its own interface); in: what it receives.
    #[arg(long, value_name = "out|in|both", default_value = "out")]
    pub direction: String,
    /// Mean added delay (us, ms, s).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub delay: Option<String>,
    /// Delay spread around the mean.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub jitter: Option<String>,
    /// Jitter distribution: normal (jitter = standard deviation) or uniform.
    #[arg(long, value_name = "normal|uniform")]
    pub distribution: Option<String>,
    /// Independent loss per packet.
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub loss: Option<String>,
    /// Bursty loss (Gilbert model): chance per packet of entering, then of leaving, the
    /// state where every packet is lost.
    #[arg(long, value_name = "P_bad,P_good", allow_hyphen_values = true)]
    pub loss_burst: Option<String>,
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub duplicate: Option<String>,
    /// Flip a random bit in a share of packets.
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub corrupt: Option<String>,
    /// Send a share of packets at once while the rest wait their delay (needs --delay).
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub reorder: Option<String>,
    /// Wire rate (kbit, mbit, gbit; kbps, mbps are bytes per second, as in tc).
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub rate: Option<String>,
    /// Most packets the link holds (default 1000); more are dropped.
    #[arg(long, value_name = "PACKETS")]
    pub limit: Option<u32>,
    /// Seed of the random draws, for a repeatable run.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

fn path(network: &str, endpoint: &str) -> String {
    format!("/v1/networks/{}/links/{}", seg(network), seg(endpoint))
}

pub async fn run(c: &ApiClient, cmd: LinkCommand) -> Result<i32, CliError> {
    match cmd {
        LinkCommand::Set {
            network,
            endpoint,
            settings: a,
        } => {
            let req = LinkSettings {
                direction: Some(a.direction),
                delay: a.delay,
                jitter: a.jitter,
                distribution: a.distribution,
                loss: a.loss,
                loss_burst: a.loss_burst,
                duplicate: a.duplicate,
                corrupt: a.corrupt,
                reorder: a.reorder,
                rate: a.rate,
                limit: a.limit,
                seed: a.seed,
            };
            let v = c.post(&path(&network, &endpoint), &req).await?;
            if a.json {
                print_json(&v);
            } else {
                show(&[decode(v)?]);
            }
        }
        LinkCommand::Show {
            network,
            endpoint,
            json,
        } => {
            let uri = match (&network, &endpoint) {
                (None, _) => "/v1/links".to_string(),
                (Some(n), None) => format!("/v1/networks/{}/links", seg(n)),
                (Some(n), Some(e)) => path(n, e),
            };
            let v = c.get(&uri).await?;
            if json {
                print_json(&v);
            } else {
                let rows: Vec<LinkInfo> = decode(v)?;
                show(&rows);
            }
        }
        LinkCommand::Reset { network, endpoint } => {
            show(&[decode(c.delete(&path(&network, &endpoint)).await?)?]);
        }
        LinkCommand::Down { network, endpoint } => {
            let p = format!("{}/down", path(&network, &endpoint));
            show(&[decode(c.post(&p, &serde_json::json!({})).await?)?]);
        }
        LinkCommand::Up { network, endpoint } => {
            let p = format!("{}/up", path(&network, &endpoint));
            show(&[decode(c.post(&p, &serde_json::json!({})).await?)?]);
        }
    }
    Ok(0)
}

/// One impairment as tc would print it.
pub fn describe(s: &LinkSettings) -> String {
    let mut out = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push(format!("{k} {v}"));
        }
    };
    add("delay", &s.delay);
    add("jitter", &s.jitter);
    add("distribution", &s.distribution);
    add("loss", &s.loss);
    add("loss-burst", &s.loss_burst);
    add("duplicate", &s.duplicate);
    add("corrupt", &s.corrupt);
    add("reorder", &s.reorder);
    add("rate", &s.rate);
    if let Some(l) = s.limit {
        out.push(format!("limit {l}"));
    }
    out.join(" ")
}

fn drops(k: &LinkWayCounters) -> String {
    let parts: Vec<String> = [
        ("loss", k.loss),
        ("limit", k.limit),
        ("down", k.down),
        ("flushed", k.flushed),
        ("dup", k.duplicated),
        ("corrupt", k.corrupted),
        ("reorder", k.reordered),
        ("held", k.held),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(r, n)| format!("{r}={n}"))
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn show(rows: &[LinkInfo]) {
    let mut out = Vec::new();
    for r in rows {
        for (dir, s, k) in [
            ("out", &r.out, &r.counters.out),
            ("in", &r.inbound, &r.counters.inbound),
        ] {
            out.push(vec![
                r.network.clone(),
                r.port.clone(),
                if r.down { "down" } else { "up" }.to_string(),
                dir.to_string(),
                s.as_ref().map(describe).unwrap_or_else(|| "-".into()),
                drops(k),
            ]);
        }
    }
    print!(
        "{}",
        render(
            &[
                "NETWORK",
                "ENDPOINT",
                "CARRIER",
                "DIR",
                "IMPAIRMENT",
                "COUNTS"
            ],
            &out
        )
    );
}
