//! Why the router drops a packet: one [`EgressDrop`] reason per way, shared by the parsers
//! ([`crate::packet`], [`crate::tcp::seg`]) and the engines ([`crate::egress`], the TCP relay)
//! that count them. It imports nothing of the crate, so every module may name a reason.

use serde::Serialize;

/// Why an egress packet (or a reply to one) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressDrop {
    /// The network is internal: nothing leaves it.
    Disabled,
    /// An IPv4, UDP or ICMP header is cut short or inconsistent (version, header length,
    /// total length, UDP length).
    Malformed,
    /// The IPv4 header, UDP or ICMP checksum is wrong.
    BadChecksum,
    /// An IPv4 fragment: endpoint fragments are not reassembled.
    Fragment,
    /// A protocol egress does not carry (yet): anything but UDP and ICMP echo requests.
    Unsupported,
    /// A source outside the network (or the gateway's own), a destination that is never
    /// routed (multicast, broadcast, 0/8, link-local, class E), or port 0.
    BadAddress,
    /// The TTL ran out at the gateway (answered with ICMP time exceeded).
    TtlExpired,
    /// The endpoint has as many flows as it may.
    EndpointFlowCap,
    /// The flow table is full.
    FlowTableFull,
    /// ICMP echo needs an ICMP datagram socket, which `net.ipv4.ping_group_range` denies the
    /// daemon, or a raw one, which needs `CAP_NET_RAW`.
    IcmpNotPermitted,
    /// The host socket for a new flow could not be created (e.g. out of file descriptors).
    HostSocketError,
    /// The destination is unreachable from the host (answered with ICMP unreachable).
    Unreachable,
    /// The host socket's send buffer is full.
    HostSendBusy,
    /// The host socket's send failed otherwise.
    HostSendError,
    /// A reply could not be queued to the switch (its port queue is full).
    ReplyQueueFull,
    /// A reply arrived for a flow that had just been removed.
    StaleReply,
    /// A TCP segment for no connection the relay knows (answered with RST).
    TcpNoConnection,
    /// The process-wide cap on host sockets is reached ([`crate::limits`]): no socket for a
    /// new flow, answered as a full flow table is.
    HostSocketCap,
    /// The destination is inside a netyard network's subnet: refused locally with ICMP
    /// "communication administratively prohibited", never sent to the host's routes.
    RefusedLocalNetwork,
    /// The destination is in 127.0.0.0/8: refused locally the same way (the host's loopback
    /// is only reached through the gateway's address under `--host-loopback`).
    RefusedLoopback,
    /// Kernel: replies the host dropped because a flow socket's receive buffer was full (the
    /// socket's drop count, `SO_MEMINFO`, read on the sweep after the flow was read, and when
    /// the flow closes).
    UdpRcvbufFull,
}

impl EgressDrop {
    pub const ALL: [EgressDrop; 21] = [
        EgressDrop::Disabled,
        EgressDrop::Malformed,
        EgressDrop::BadChecksum,
        EgressDrop::Fragment,
        EgressDrop::Unsupported,
        EgressDrop::BadAddress,
        EgressDrop::TtlExpired,
        EgressDrop::EndpointFlowCap,
        EgressDrop::FlowTableFull,
        EgressDrop::IcmpNotPermitted,
        EgressDrop::HostSocketError,
        EgressDrop::Unreachable,
        EgressDrop::HostSendBusy,
        EgressDrop::HostSendError,
        EgressDrop::ReplyQueueFull,
        EgressDrop::StaleReply,
        EgressDrop::TcpNoConnection,
        EgressDrop::HostSocketCap,
        EgressDrop::RefusedLocalNetwork,
        EgressDrop::RefusedLoopback,
        EgressDrop::UdpRcvbufFull,
    ];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EgressDrop::Disabled => "egress_disabled",
            EgressDrop::Malformed => "malformed",
            EgressDrop::BadChecksum => "bad_checksum",
            EgressDrop::Fragment => "fragment",
            EgressDrop::Unsupported => "unsupported",
            EgressDrop::BadAddress => "bad_address",
            EgressDrop::TtlExpired => "ttl_expired",
            EgressDrop::EndpointFlowCap => "endpoint_flow_cap",
            EgressDrop::FlowTableFull => "flow_table_full",
            EgressDrop::IcmpNotPermitted => "icmp_not_permitted",
            EgressDrop::HostSocketError => "host_socket_error",
            EgressDrop::Unreachable => "unreachable",
            EgressDrop::HostSendBusy => "host_send_busy",
            EgressDrop::HostSendError => "host_send_error",
            EgressDrop::ReplyQueueFull => "reply_queue_full",
            EgressDrop::StaleReply => "stale_reply",
            EgressDrop::TcpNoConnection => "tcp_no_connection",
            EgressDrop::HostSocketCap => "host_socket_cap",
            EgressDrop::RefusedLocalNetwork => "refused_local_network",
            EgressDrop::RefusedLoopback => "refused_loopback",
            EgressDrop::UdpRcvbufFull => "udp_rcvbuf_full",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
