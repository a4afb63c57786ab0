use super::*;

fn host() -> HostView {
    HostView {
        routes: vec![
            "10.89.0.0/24".parse().unwrap(),
            "198.18.0.0/15".parse().unwrap(),
        ],
        default_if: Some(("uplink0".to_string(), Some(Ipv4Addr::new(198, 18, 0, 2)))),
        any_addr: Some(Ipv4Addr::new(198, 18, 0, 2)),
    }
}

fn podman_53() -> Options {
    Options {
        config_net: true,
        dns_forward: vec![Ipv4Addr::new(169, 254, 1, 1)],
        map_guest_addr: vec![Ipv4Addr::new(169, 254, 1, 2)],
        no_map_gw: true,
        quiet: true,
        ..Options::default()
    }
}

#[test]
fn podman_gets_a_private_subnet_clear_of_the_hosts_routes() {
    let l = plan(&podman_53(), &host()).unwrap();
    assert_eq!(
        l,
        Layout {
            subnet: "10.89.1.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 89, 1, 1),
            guest: Ipv4Addr::new(10, 89, 1, 2),
            mtu: Some(PASTA_MTU),
            ifname: "uplink0".to_string(),
            dns_forward: vec![Ipv4Addr::new(169, 254, 1, 1)],
            gateway_to_host_loopback: false,
            maps: vec![DestMap {
                from: Ipv4Addr::new(169, 254, 1, 2),
                to: Ipv4Addr::new(198, 18, 0, 2)
            }],
        }
    );
}

#[test]
fn without_no_map_gw_the_gateway_leads_to_the_hosts_loopback() {
    let o = Options {
        no_map_gw: false,
        ..podman_53()
    };
    assert!(plan(&o, &host()).unwrap().gateway_to_host_loopback);
    let o = Options {
        no_map_gw: false,
        map_host_loopback: vec![Ipv4Addr::new(169, 254, 1, 3)],
        ..podman_53()
    };
    let l = plan(&o, &host()).unwrap();
    assert!(!l.gateway_to_host_loopback);
    assert_eq!(
        l.maps[0],
        DestMap {
            from: Ipv4Addr::new(169, 254, 1, 3),
            to: Ipv4Addr::LOCALHOST
        }
    );
}

#[test]
fn a_host_without_a_default_route_maps_the_guest_addr_to_any_address_or_loopback() {
    let h = HostView {
        default_if: None,
        ..host()
    };
    assert_eq!(
        plan(&podman_53(), &h).unwrap().maps[0].to,
        Ipv4Addr::new(198, 18, 0, 2)
    );
    let l = plan(&podman_53(), &HostView::default()).unwrap();
    assert_eq!(l.maps[0].to, Ipv4Addr::LOCALHOST);
    assert_eq!(l.ifname, "eth0");
    assert_eq!(l.subnet, "10.89.0.0/24".parse().unwrap());
}

#[test]
fn address_netmask_and_gateway_options_are_honoured() {
    let o = Options {
        address: Some(Ipv4Addr::new(192, 168, 7, 20)),
        netmask: Some(28),
        gateway: Some(Ipv4Addr::new(192, 168, 7, 17)),
        mtu: Some(1500),
        ns_ifname: Some("eth0".to_string()),
        ..podman_53()
    };
    let l = plan(&o, &host()).unwrap();
    assert_eq!(l.subnet, "192.168.7.16/28".parse().unwrap());
    assert_eq!(
        (l.guest, l.gateway),
        (
            Ipv4Addr::new(192, 168, 7, 20),
            Ipv4Addr::new(192, 168, 7, 17)
        )
    );
    assert_eq!((l.mtu, l.ifname.as_str()), (Some(1500), "eth0"));
    // no gateway given: the first host address that is not the guest's
    let o = Options {
        address: Some(Ipv4Addr::new(192, 168, 7, 1)),
        ..podman_53()
    };
    let l = plan(&o, &host()).unwrap();
    assert_eq!(l.gateway, Ipv4Addr::new(192, 168, 7, 2));
}

#[test]
fn mtu_zero_leaves_the_interface_alone() {
    let o = Options {
        mtu: Some(0),
        ..podman_53()
    };
    assert_eq!(plan(&o, &host()).unwrap().mtu, None);
}

#[test]
fn impossible_layouts_name_the_option() {
    let o = Options {
        address: Some(Ipv4Addr::new(192, 168, 7, 20)),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..podman_53()
    };
    assert!(matches!(
        plan(&o, &host()),
        Err(LayoutError::BadGateway { .. })
    ));
    let o = Options {
        address: Some(Ipv4Addr::new(192, 168, 7, 0)),
        ..podman_53()
    };
    assert_eq!(
        plan(&o, &host()),
        Err(LayoutError::BadAddress(Ipv4Addr::new(192, 168, 7, 0)))
    );
    let o = Options {
        address: Some(Ipv4Addr::new(192, 168, 7, 1)),
        netmask: Some(31),
        ..podman_53()
    };
    assert!(matches!(
        plan(&o, &host()),
        Err(LayoutError::TooSmall { .. })
    ));
    let full = HostView {
        routes: vec![
            "10.0.0.0/8".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ],
        ..HostView::default()
    };
    assert_eq!(plan(&podman_53(), &full), Err(LayoutError::NoSubnet));
}

#[test]
fn ipv6_is_a_ula_64_clear_of_the_hosts_routes_when_the_host_has_ipv6() {
    // Only link-local routes: no IPv6 to relay to.
    let mut h = host();
    h.routes.push("fe80::/64".parse().unwrap());
    assert_eq!(plan6(&podman_53(), &h, || 7).unwrap(), None);
    // A global prefix: a ULA /64 whose global ID is the random draw, gateway ::1, guest ::2.
    h.routes.push("2001:db8:5::/64".parse().unwrap());
    let l = plan6(&podman_53(), &h, || 0x01_0203_0405).unwrap().unwrap();
    assert_eq!(l.subnet.prefix_len(), 64);
    assert!("fd00::/8".parse::<Ipv6Net>().unwrap().contains(&l.subnet));
    assert_eq!(u128::from(l.gateway), u128::from(l.subnet.network()) + 1);
    assert_eq!(u128::from(l.guest), u128::from(l.subnet.network()) + 2);
    assert_eq!(l.dns_forward, None);
    // A host route over the draw's prefix: another one.
    let mut taken = h.clone();
    taken.routes.push(IpNet::V6(l.subnet));
    let mut draws = [0x01_0203_0405_u64, 0x0a_0b0c_0d0e].into_iter().cycle();
    let other = plan6(&podman_53(), &taken, || draws.next().unwrap_or(9))
        .unwrap()
        .unwrap();
    assert_ne!(other.subnet, l.subnet);
    // -4 turns it off; an IPv6 --dns-forward is the resolver's address.
    let v4 = Options {
        ipv4_only: true,
        ..podman_53()
    };
    assert_eq!(plan6(&v4, &h, || 7).unwrap(), None);
    let dns = Options {
        dns_forward6: vec!["fd99::53".parse().unwrap()],
        ..podman_53()
    };
    let l = plan6(&dns, &h, || 7).unwrap().unwrap();
    assert_eq!(l.dns_forward, Some("fd99::53".parse().unwrap()));
}
