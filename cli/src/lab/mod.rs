//! `netyard lab`: a whole lab (networks, nodes with their commands, addresses and routes,
//! impaired links) from one TOML or YAML file. `file` reads it, `plan` checks it into the
//! daemon requests (pure), `apply` carries them out through the API all or nothing, `graph`
//! draws it.

pub mod apply;
pub mod file;
pub mod graph;
pub mod plan;

#[cfg(test)]
mod tests;

use clap::{Subcommand, ValueEnum};

use crate::client::ApiClient;
use crate::commands::{print_json, CliError};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create everything FILE declares (all or nothing): networks, nodes (namespaces the
    /// daemon keeps, each running its command), their interfaces, routes and link
    /// impairments. A file named *.yaml or *.yml is YAML, any other TOML.
    Up {
        file: String,
        /// Print what would be created (JSON) and create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove everything `lab up` made for the lab of FILE (or the lab named so), and
    /// nothing else.
    Down {
        #[arg(value_name = "FILE|NAME")]
        lab: String,
    },
    /// List labs with their networks and nodes.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Draw FILE's lab: networks, nodes, routers and impaired links.
    Graph {
        file: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Svg,
    Mermaid,
    Dot,
}

/// Reads and checks a lab file: its plan, or every issue, each as `FILE: PATH: REASON`.
pub fn load(path: &str) -> Result<(file::LabFile, plan::Plan), CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        context: format!("reading {path}"),
        source,
    })?;
    let lab = file::parse(&text, file::is_yaml(path))
        .map_err(|i| CliError::Usage(format!("{path}: {i}")))?;
    let p = plan::plan(&lab, path).map_err(|issues| {
        CliError::Usage(
            issues
                .iter()
                .map(|i| format!("{path}: {i}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok((lab, p))
}

pub async fn run(c: &ApiClient, cmd: LabCommand) -> Result<i32, CliError> {
    match cmd {
        LabCommand::Up { file, dry_run } => {
            let (_, p) = load(&file)?;
            if dry_run {
                print_json(&serde_json::json!({
                    "name": p.name,
                    "networks": p.networks,
                    "routers": p.routers,
                    "gateway_routers": p.gateway_routers.iter().map(|(n, r)| serde_json::json!({"network": n, "router": r})).collect::<Vec<_>>(),
                    "nodes": p.nodes,
                    "attach": p.attaches.iter().map(|a| serde_json::json!({"network": a.network, "endpoint": a.endpoint})).collect::<Vec<_>>(),
                    "routes": p.routes.iter().map(|(n, r)| serde_json::json!({"node": n, "route": r})).collect::<Vec<_>>(),
                    "links": p.links.iter().map(|l| serde_json::json!({"network": l.network, "endpoint": l.endpoint, "settings": l.settings})).collect::<Vec<_>>(),
                }));
                return Ok(0);
            }
            let rec = apply::up(c, &p, &file).await?;
            println!(
                "lab {} up: {} networks, {} routers, {} nodes, {} interfaces, {} routes, {} impaired links",
                rec.name,
                rec.networks.len(),
                rec.routers.len(),
                rec.nodes.len(),
                rec.endpoints.len(),
                p.routes.len(),
                p.links.len()
            );
            Ok(0)
        }
        LabCommand::Down { lab } => {
            let name = if std::path::Path::new(&lab).is_file() {
                // The name from the file; a file that no longer parses still names its lab
                // by its file name.
                match std::fs::read_to_string(&lab)
                    .ok()
                    .and_then(|t| file::parse(&t, file::is_yaml(&lab)).ok())
                    .and_then(|f| f.name)
                {
                    Some(n) => n,
                    None => plan::default_name(&lab),
                }
            } else {
                lab
            };
            let rec = apply::down(c, &name).await?;
            println!(
                "lab {} down: removed {} networks, {} routers, {} nodes",
                rec.name,
                rec.networks.len(),
                rec.routers.len(),
                rec.nodes.len()
            );
            Ok(0)
        }
        LabCommand::Ls { json } => apply::ls(c, json).await,
        LabCommand::Graph { file, format } => {
            let (lab, p) = load(&file)?;
            let out = match format {
                GraphFormat::Dot => graph::dot(&lab, &p.name),
                GraphFormat::Mermaid => graph::mermaid(&lab),
                GraphFormat::Svg => graph::svg(&lab, &p.name),
            };
            print!("{out}");
            Ok(0)
        }
    }
}
