//! Network port kind `gateway`: the network's router (ARP, ICMP echo, DNS on port 53, egress,
//! the TCP relay, published ports) on a task of its own behind an in-process port of the
//! switch. It lives in the daemon's process, so after a restart it is simply made again; what
//! it held (relayed connections, UDP flows, published connections in flight) is gone, and the
//! containers see a reset or an ICMP error for them, never a hang.

use std::sync::Arc;

use netyard_router::conntrack::FlowLimits;
use netyard_switch::handoff::HandoffPort;
use netyard_switch::{driver, MacAddr, SwitchPort};
use tokio::task::JoinHandle;

use super::{Description, NetCx, PortKind};
use crate::dnsd;
use crate::error::DaemonError;
use crate::plan::docker_mac;
use crate::spec::NetworkSpec;

pub struct Gateway;

/// A running gateway.
pub struct GatewayLive {
    pub mac: MacAddr,
    pub port: Arc<SwitchPort>,
    tasks: Vec<JoinHandle<()>>,
    /// The gateway's egress engine: its flow table and counters.
    pub egress: netyard_router::egress::EgressHandle,
    /// Adds and removes the network's published ports.
    pub publisher: netyard_router::publish::Publisher,
    /// Greets a joining endpoint with a Router Advertisement.
    pub advertiser: netyard_router::gateway::Advertiser,
}

impl GatewayLive {
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The flow caps of a network's spec.
pub fn flow_limits(spec: &NetworkSpec) -> FlowLimits {
    FlowLimits {
        max_per_endpoint: spec.max_flows_per_endpoint,
        max_total: spec.max_flows,
        ..FlowLimits::default()
    }
}

impl PortKind for Gateway {
    type Cx<'a> = NetCx<'a>;
    type Spec = NetworkSpec;
    type Built = GatewayLive;
    type Remains = GatewayLive;
    const NAME: &'static str = "gateway";

    /// A port on the switch served by the router's userspace interface. Its MAC follows the
    /// endpoints' scheme (02:42 and the address), so it is unique on the network.
    async fn setup<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<GatewayLive, DaemonError> {
        let io = |context: &'static str| {
            move |source| DaemonError::Io {
                context: context.to_string(),
                source,
            }
        };
        let switch = cx.switch;
        let mac = docker_mac(p.gateway);
        // The gateway takes TCP super-frames whole (the TCP relay handles them as single
        // segments); UDP GSO frames are cut by the switch.
        let caps = netyard_switch::PortCaps {
            vnet_hdr: true,
            gso_tcp: true,
            gso_udp: false,
        };
        // In process: the port tasks hand the gateway task their frames' buffers, and the
        // gateway task forwards its own frames (netyard_router::uplink); no port task reads
        // this port.
        let (port, rx) = HandoffPort::pair(caps, driver::RX_BUF_LEN);
        let sp = switch.add_port(Self::NAME, Box::new(port));
        let svc: Arc<dyn netyard_router::gateway::DnsService> =
            Arc::new(dnsd::GatewayDns::new(cx.dns, &p.name, p.internal));
        let cfg = netyard_router::gateway::GatewayConfig {
            ip: p.gateway,
            prefix_len: p.subnet.prefix_len(),
            mac: mac.0,
            mtu: p.mtu as usize,
            egress: !p.internal,
            flow_limits: flow_limits(p),
            host_loopback: p.host_loopback,
            extra_ips: p.gateway_extra.clone(),
            maps: p
                .maps
                .iter()
                .map(|m| netyard_router::packet::AddrMap {
                    guest: m.guest,
                    host: m.host,
                })
                .collect(),
            local_subnets: cx.local_subnets.v4.clone(),
            ipv6: p.ipv6.map(|v| netyard_router::gateway::GatewayV6 {
                addr: v.gateway,
                prefix: v.subnet,
                extra: p.gateway_extra6.clone(),
            }),
            maps6: Vec::new(),
            local_subnets6: cx.local_subnets.v6.clone(),
        };
        let direct = netyard_router::uplink::Direct {
            switch: switch.clone(),
            port: sp.clone(),
        };
        let link = netyard_router::uplink::SwitchLink::InProcess { rx, direct };
        let gw = match cx
            .lane
            .enter(|| netyard_router::gateway::start(cfg, link, Some(svc)))
        {
            Ok(t) => t,
            Err(e) => {
                switch.remove_port(sp.id);
                return Err(io("starting the gateway")(e));
            }
        };
        Ok(GatewayLive {
            mac,
            port: sp,
            tasks: vec![gw.task],
            egress: gw.egress,
            publisher: gw.publisher,
            advertiser: gw.advertiser,
        })
    }

    async fn adopt<'a>(cx: &'a NetCx<'a>, p: &'a NetworkSpec) -> Result<GatewayLive, DaemonError> {
        Self::setup(cx, p).await
    }

    async fn teardown(_spec: &NetworkSpec, live: GatewayLive) {
        live.stop();
    }

    fn describe(_spec: &NetworkSpec) -> Description {
        Description {
            kind: Self::NAME,
            host_ifname: None,
        }
    }
}
