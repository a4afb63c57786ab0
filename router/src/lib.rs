//! Router: network gateways, NAT and egress. Skeleton until the router issue lands.
