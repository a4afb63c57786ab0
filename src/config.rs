//! The daemon's TOML config: networks and endpoints to create at start-up, with the same
//! fields as the API requests.
//!
//! ```toml
//! [[network]]
//! name = "lab"
//! subnet = "10.77.0.0/24"
//!
//! [[endpoint]]
//! network = "lab"
//! name = "a"
//! netns = "/run/netns/a"
//! ```

use std::path::Path;

use netyard_api::model::{EndpointCreate, NetworkCreate};
use serde::Deserialize;

use crate::error::DaemonError;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: Vec<NetworkCreate>,
    #[serde(default)]
    pub endpoint: Vec<EndpointCreate>,
}

impl Config {
    /// Reads and parses `path`. Errors name the file, the field and the reason.
    pub fn load(path: &Path) -> Result<Config, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|e| DaemonError::Config {
            path: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|reason| DaemonError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses TOML text; the error names the field (toml reports the key and its line).
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            e.to_string()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        for (i, ep) in cfg.endpoint.iter().enumerate() {
            if ep.network.as_deref().unwrap_or("").is_empty() {
                return Err(format!(
                    "endpoint[{i}].network: missing (an endpoint in the config must name its network)"
                ));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_networks_and_endpoints() {
        let c = Config::parse(
            r#"
            [[network]]
            name = "lab"
            subnet = "10.77.0.0/24"
            mtu = 9000
            [[endpoint]]
            network = "lab"
            name = "a"
            netns = "/run/netns/a"
            kind = "veth"
            "#,
        )
        .unwrap();
        assert_eq!(c.network[0].mtu, Some(9000));
        assert_eq!(c.endpoint[0].kind.as_deref(), Some("veth"));
    }

    #[test]
    fn unknown_field_is_named() {
        let e =
            Config::parse("[[network]]\nname = \"x\"\nsubnett = \"10.0.0.0/24\"\n").unwrap_err();
        assert!(e.contains("subnett"), "{e}");
    }

    #[test]
    fn endpoint_without_network_is_refused() {
        let e = Config::parse("[[endpoint]]\nname = \"a\"\nnetns = \"/x\"\n").unwrap_err();
        assert!(e.contains("endpoint[0].network"), "{e}");
    }
}
