use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn eph() -> Ephemeral {
    Ephemeral::default()
}

fn r(start: u16, end: u16) -> PortRange {
    PortRange { start, end }
}

fn fwd(host: PortRange, target: u16) -> Forward {
    Forward {
        addr: None,
        ifname: None,
        host,
        target,
    }
}

fn list(spec: &str) -> Result<Vec<Forward>, PortSpecError> {
    parse_list('t', spec, eph())
}

#[test]
fn a_single_port_forwards_to_itself() {
    assert_eq!(list("22").unwrap(), vec![fwd(r(22, 22), 22)]);
}

#[test]
fn a_target_after_the_colon_remaps() {
    assert_eq!(list("22:23").unwrap(), vec![fwd(r(22, 22), 23)]);
}

#[test]
fn podman_writes_ranges_on_both_sides() {
    // Podman 5 writes every mapping as HOST-HOST:CTR-CTR, one port or a range.
    assert_eq!(
        list("8080-8080:80-80").unwrap(),
        vec![fwd(r(8080, 8080), 80)]
    );
    let f = list("22-80:32-90").unwrap();
    assert_eq!(f, vec![fwd(r(22, 80), 32)]);
    assert_eq!(f[0].target_of(80), 90);
}

#[test]
fn a_comma_list_gives_one_forward_each() {
    assert_eq!(
        list("22,25").unwrap(),
        vec![fwd(r(22, 22), 22), fwd(r(25, 25), 25)]
    );
}

#[test]
fn an_address_prefix_binds_every_item_of_the_list() {
    let f = list("192.0.2.1/5,7").unwrap();
    assert_eq!(f.len(), 2);
    for x in &f {
        assert_eq!(x.addr, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(x.ifname, None);
    }
}

#[test]
fn ipv6_addresses_interfaces_and_brackets_are_taken() {
    let f = list("::1/80").unwrap();
    assert_eq!(f[0].addr, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let f = list("[::1]/80").unwrap();
    assert_eq!(f[0].addr, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let f = list("127.0.0.1%lo/80").unwrap();
    assert_eq!(f[0].addr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(f[0].ifname.as_deref(), Some("lo"));
    let f = list("%eth0/80").unwrap();
    assert_eq!((f[0].addr, f[0].ifname.as_deref()), (None, Some("eth0")));
}

#[test]
fn exclusions_cut_holes_in_ranges() {
    assert_eq!(
        list("5-25,~10-20").unwrap(),
        vec![fwd(r(5, 9), 5), fwd(r(21, 25), 21)]
    );
    // a hole in a remapped range keeps the offset of what is left
    assert_eq!(
        list("100-110:200-210,~103").unwrap(),
        vec![fwd(r(100, 102), 200), fwd(r(104, 110), 204)]
    );
}

#[test]
fn exclusions_alone_mean_every_non_ephemeral_port_but_those() {
    let f = parse_list(
        't',
        "~25",
        Ephemeral {
            first: 32768,
            last: 60999,
        },
    )
    .unwrap();
    assert_eq!(
        f,
        vec![
            fwd(r(1, 24), 1),
            fwd(r(26, 32767), 26),
            fwd(r(61000, 65535), 61000)
        ]
    );
}

#[test]
fn malformed_specs_are_refused_as_pasta_words_it() {
    for bad in [
        "80-81:90",
        "80:90-91",
        "65536",
        "80-",
        "-80",
        ",80",
        "80,",
        "1.2.3.4/",
        "x/80",
        "80:90:100",
        "80-70",
        "~80-70",
        "80~81",
        "",
        "foo",
        "8 0",
        "+80",
        "1.2.3.4%loooooooooooooong/80",
    ] {
        assert_eq!(
            list(bad),
            Err(PortSpecError::Invalid(bad.to_string())),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn port_zero_is_refused_naming_the_option() {
    let e = list("0").unwrap_err();
    assert_eq!(e.to_string(), "Can't forward port 0 for option '-t 0'");
}

#[test]
fn overlaps_within_one_spec_are_refused() {
    assert!(matches!(list("80,80"), Err(PortSpecError::Overlap(_))));
    assert!(matches!(list("80-90,85"), Err(PortSpecError::Overlap(_))));
}

#[test]
fn repeated_options_add_up_and_must_not_overlap() {
    let mut m = PortMode::Unset;
    add(&mut m, 't', "80", eph()).unwrap();
    add(&mut m, 't', "127.0.0.1/81-82:91-92", eph()).unwrap();
    let PortMode::Spec(ref f) = m else {
        panic!("expected a list, got {m:?}")
    };
    assert_eq!(f.len(), 2);
    assert_eq!(
        add(&mut m, 't', "82", eph()),
        Err(PortSpecError::Overlap("82".to_string()))
    );
    // the refused option changed nothing
    assert!(matches!(m, PortMode::Spec(ref f) if f.len() == 2));
}

#[test]
fn none_and_auto_stand_alone() {
    let mut m = PortMode::Unset;
    add(&mut m, 't', "none", eph()).unwrap();
    assert_eq!(m, PortMode::None);
    assert_eq!(
        add(&mut m, 't', "80", eph()),
        Err(PortSpecError::SpecAfterMode)
    );
    assert_eq!(m, PortMode::None);
    let mut m = PortMode::Unset;
    add(&mut m, 't', "80", eph()).unwrap();
    assert_eq!(
        add(&mut m, 't', "none", eph()).unwrap_err().to_string(),
        "Port forwarding mode 'none' conflicts with previous mode"
    );
    let mut m = PortMode::Unset;
    add(&mut m, 'u', "auto", eph()).unwrap();
    assert_eq!(m, PortMode::Auto);
}

#[test]
fn all_is_passt_only() {
    let mut m = PortMode::Unset;
    assert_eq!(
        add(&mut m, 't', "all", eph()).unwrap_err().to_string(),
        "'all' port forwarding is only allowed for passt"
    );
}

#[test]
fn the_ephemeral_range_parses_from_proc() {
    assert_eq!(
        Ephemeral::parse("32768\t60999\n"),
        Some(Ephemeral {
            first: 32768,
            last: 60999
        })
    );
    assert_eq!(Ephemeral::parse("60999 32768"), None);
    assert_eq!(Ephemeral::parse("x"), None);
}

#[test]
fn forwards_become_the_daemons_publish_specs() {
    let mut t = PortMode::Unset;
    add(&mut t, 't', "8080-8080:80-80", eph()).unwrap();
    add(&mut t, 't', "127.0.0.1/9000-9001:90-91", eph()).unwrap();
    add(&mut t, 't', "::1/7000", eph()).unwrap();
    let mut u = PortMode::Unset;
    add(&mut u, 'u', "5353:53", eph()).unwrap();
    let specs = publish_specs(&t, &u);
    assert_eq!(
        specs,
        vec![
            "8080-8080:80-80/tcp",
            "127.0.0.1:9000-9001:90-91/tcp",
            "[::1]:7000-7000:7000-7000/tcp",
            "5353-5353:53-53/udp",
        ]
    );
    // and the daemon's parser takes every one of them
    for s in &specs {
        netyard_api::portspec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    assert!(publish_specs(&PortMode::None, &PortMode::Unset).is_empty());
}
