//! Planning `network update --gateway-router` (issue 18): which router's address becomes the
//! network's endpoints' default gateway. Pure: the network's spec and the routers' specs in.

use std::collections::BTreeMap;

use super::quoted;
use crate::error::DaemonError;
use crate::spec::{GatewayRouterSpec, NetworkSpec, RouterSpec};

/// `Some(name)`: router `name` (which must have an interface on `net`) is the gateway router;
/// `None`: netyard's gateway again.
pub fn plan_gateway_router(
    net: &NetworkSpec,
    router: Option<&str>,
    routers: &BTreeMap<String, RouterSpec>,
) -> Result<Option<GatewayRouterSpec>, DaemonError> {
    let Some(name) = router else {
        return Ok(None);
    };
    let Some(r) = routers.get(name) else {
        return Err(DaemonError::invalid(
            "gateway_router",
            format!("no router named {}", quoted(name)),
        ));
    };
    let Some(f) = r.interfaces.iter().find(|f| f.network == net.name) else {
        return Err(DaemonError::invalid(
            "gateway_router",
            format!(
                "router {name:?} has no interface on network {:?} (its networks: {})",
                net.name,
                r.interfaces
                    .iter()
                    .map(|f| f.network.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    Ok(Some(GatewayRouterSpec {
        router: name.to_string(),
        ip: f.ip,
    }))
}

/// The networks whose gateway router is `router` (a router that is one may not be removed).
pub fn networks_gated_by<'a>(
    nets: impl IntoIterator<Item = &'a NetworkSpec>,
    router: &str,
) -> Vec<String> {
    nets.into_iter()
        .filter(|n| {
            n.gateway_router
                .as_ref()
                .is_some_and(|g| g.router == router)
        })
        .map(|n| n.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RouterIfaceSpec;
    use std::net::Ipv4Addr;

    fn net(name: &str) -> NetworkSpec {
        crate::plan::plan_network(
            &netyard_api::model::NetworkCreate {
                name: name.into(),
                subnet: Some("10.1.0.0/24".into()),
                ..Default::default()
            },
            std::iter::empty(),
            &[],
            None,
        )
        .expect("network")
    }

    fn routers() -> BTreeMap<String, RouterSpec> {
        let ip = Ipv4Addr::new(10, 1, 0, 254);
        BTreeMap::from([(
            "r1".to_string(),
            RouterSpec {
                name: "r1".into(),
                interfaces: vec![RouterIfaceSpec {
                    network: "lan".into(),
                    ip,
                    mac: crate::plan::docker_mac(ip),
                    nat: false,
                    link: Default::default(),
                }],
                routes: vec![],
            },
        )])
    }

    #[test]
    fn the_gateway_router_is_its_address_on_the_network() {
        let mut lan = net("lan");
        let g = plan_gateway_router(&lan, Some("r1"), &routers()).expect("planned");
        assert_eq!(
            g,
            Some(GatewayRouterSpec {
                router: "r1".into(),
                ip: Ipv4Addr::new(10, 1, 0, 254)
            })
        );
        assert_eq!(lan.default_gateway(), Ipv4Addr::new(10, 1, 0, 1));
        lan.gateway_router = g;
        assert_eq!(lan.default_gateway(), Ipv4Addr::new(10, 1, 0, 254));
        assert_eq!(networks_gated_by([&lan], "r1"), vec!["lan".to_string()]);
        assert!(networks_gated_by([&lan], "r2").is_empty());
        assert_eq!(plan_gateway_router(&lan, None, &routers()).ok(), Some(None));
    }

    #[test]
    fn an_unknown_router_or_one_not_on_the_network_is_refused_naming_the_field() {
        let lan = net("lan");
        let e = plan_gateway_router(&lan, Some("nope"), &routers()).expect_err("unknown");
        assert_eq!(e.field(), Some("gateway_router"));
        assert!(e.to_string().contains("no router named \"nope\""), "{e}");
        let wan = net("wan");
        let e = plan_gateway_router(&wan, Some("r1"), &routers()).expect_err("not on it");
        assert_eq!(e.field(), Some("gateway_router"));
        assert!(
            e.to_string().contains("no interface on network \"wan\""),
            "{e}"
        );
    }
}
