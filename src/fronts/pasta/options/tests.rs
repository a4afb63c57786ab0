use super::*;
use crate::fronts::pasta::ports::{Forward, PortRange};

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(OsString::from).collect()
}

fn run(line: &str) -> Options {
    match parse(args(line), Ephemeral::default()) {
        Ok(Parsed::Run(o)) => *o,
        other => panic!("{line}: {other:?}"),
    }
}

fn err(line: &str) -> String {
    match parse(args(line), Ephemeral::default()) {
        Err(e) => e.to_string(),
        Ok(Parsed::Run(o)) => match o.check() {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{line}: accepted"),
        },
        other => panic!("{line}: {other:?}"),
    }
}

/// Podman 5.0's list for `-p 8080:80` (containers/common's pasta setup, before --map-guest-addr).
const PODMAN_50: &str = "--config-net -t 8080-8080:80-80 --dns-forward 169.254.1.1 -u none -T none -U none --no-map-gw --quiet --netns /run/user/1000/netns/netns-1234";
/// Podman 5.3's: the same and --map-guest-addr last.
const PODMAN_53: &str = "--config-net -t 8080-8080:80-80 -u 5353-5353:53-53 --dns-forward 169.254.1.1 -T none -U none --no-map-gw --quiet --netns /run/user/1000/netns/netns-1234 --map-guest-addr 169.254.1.2";

#[test]
fn podman_50s_arguments_parse_and_pass_the_check() {
    let o = run(PODMAN_50);
    o.check().unwrap();
    assert!(o.config_net && o.no_map_gw && o.quiet);
    assert_eq!(o.dns_forward, vec![Ipv4Addr::new(169, 254, 1, 1)]);
    assert_eq!(
        o.target,
        Some(Target::Path("/run/user/1000/netns/netns-1234".into()))
    );
    assert_eq!(
        o.tcp,
        PortMode::Spec(vec![Forward {
            addr: None,
            ifname: None,
            host: PortRange {
                start: 8080,
                end: 8080
            },
            target: 80
        }])
    );
    assert_eq!(
        (&o.udp, &o.tcp_ns, &o.udp_ns),
        (&PortMode::None, &PortMode::None, &PortMode::None)
    );
    assert!(o.map_guest_addr.is_empty());
}

#[test]
fn podman_53s_arguments_add_the_guest_address_map() {
    let o = run(PODMAN_53);
    o.check().unwrap();
    assert_eq!(o.map_guest_addr, vec![Ipv4Addr::new(169, 254, 1, 2)]);
    assert!(matches!(o.udp, PortMode::Spec(ref f) if f[0].target == 53));
}

#[test]
fn podmans_pid_file_and_host_ip_mappings_parse() {
    let o = run("--config-net -t 127.0.0.1/8080-8081:80-81 -u none -T none -U none --dns-forward 169.254.1.1 --no-map-gw --quiet --map-guest-addr 169.254.1.2 --pid /tmp/pasta1/pasta.pid --netns /run/netns/x");
    o.check().unwrap();
    assert_eq!(o.pid_file, Some("/tmp/pasta1/pasta.pid".into()));
    let PortMode::Spec(f) = o.tcp else { panic!() };
    assert_eq!(f[0].addr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(
        f[0].host,
        PortRange {
            start: 8080,
            end: 8081
        }
    );
}

#[test]
fn getopt_spellings_are_all_taken() {
    let o = run("--config-net -t80 --tcp-ports=81 -qf -P/tmp/p --mtu=1500 --netns=/x --conf -4");
    let PortMode::Spec(f) = o.tcp else { panic!() };
    assert_eq!(f.len(), 2);
    assert!(o.quiet && o.foreground && o.config_net && o.ipv4_only);
    assert_eq!(o.pid_file, Some("/tmp/p".into()));
    assert_eq!(o.mtu, Some(1500));
    assert_eq!(o.target, Some(Target::Path("/x".into())));
}

#[test]
fn a_pid_operand_or_a_name_is_a_target() {
    assert_eq!(run("--config-net 1234").target, Some(Target::Pid(1234)));
    assert_eq!(
        run("--netns lab").target,
        Some(Target::Path("/run/netns/lab".into()))
    );
}

#[test]
fn accepted_options_without_effect_are_listed() {
    let o = run(
        "--netns /x --no-dhcp --runas 1000 --pcap /tmp/x.pcap -D 1.1.1.1 --map-guest-addr fd00::1",
    );
    o.check().unwrap();
    assert_eq!(
        o.ignored,
        vec![
            "--no-dhcp",
            "--runas 1000",
            "--pcap /tmp/x.pcap",
            "--dns 1.1.1.1",
            "--map-guest-addr fd00::1"
        ]
    );
    assert!(o.map_guest_addr.is_empty());
}

#[test]
fn dns_forward_takes_one_address_of_each_family() {
    let o = run("--netns /x --dns-forward 169.254.1.1 --dns-forward fd00::53");
    assert_eq!(o.dns_forward, vec![Ipv4Addr::new(169, 254, 1, 1)]);
    assert_eq!(
        o.dns_forward6,
        vec!["fd00::53".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert!(o.ignored.is_empty());
    assert!(err("--netns /x --dns-forward fd00::53 --dns-forward fd00::54").contains("fd00::54"));
    assert!(err("--netns /x --dns-forward ff02::1").contains("ff02::1"));
}

#[test]
fn every_ignored_option_is_known_and_every_option_is_handled() {
    for (name, _) in IGNORED {
        assert!(OPTIONS.iter().any(|s| s.long == *name), "{name}");
    }
    // apply() has a debug_assert for options neither handled nor listed as ignored
    for s in OPTIONS {
        if matches!(s.long, "help" | "version" | "netns" | "userns") {
            continue;
        }
        let mut o = Options::default();
        let v = match s.long {
            "tcp-ports" | "udp-ports" | "tcp-ns" | "udp-ns" => "none",
            "mtu" => "1500",
            "netmask" => "24",
            "ns-mac-addr" => "02:00:00:00:00:01",
            "ns-ifname" => "eth0",
            _ => "192.0.2.1",
        };
        apply(
            &mut o,
            s,
            s.value.then(|| v.to_string()),
            Ephemeral::default(),
        )
        .unwrap_or_else(|e| panic!("--{}: {e}", s.long));
    }
}

#[test]
fn unknown_options_read_as_getopts_errors() {
    assert_eq!(err("--bogus --netns /x"), "unrecognized option '--bogus'");
    assert_eq!(err("-Z --netns /x"), "invalid option -- 'Z'");
    assert_eq!(err("--netns"), "option '--netns' requires an argument");
    assert_eq!(err("--netns /x -t"), "option requires an argument -- 't'");
    assert_eq!(
        err("--quiet=yes --netns /x"),
        "option '--quiet' doesn't allow an argument"
    );
    assert!(err("--no-d --netns /x").starts_with("option '--no-d' is ambiguous"));
    let e = parse(args("--bogus"), Ephemeral::default()).unwrap_err();
    assert!(e.shows_usage());
}

#[test]
fn bad_values_name_the_value() {
    assert_eq!(
        err("--netns /x -t 80:99999"),
        "Invalid port specifier 80:99999"
    );
    assert_eq!(err("--netns /x --mtu 70000"), "Invalid MTU: 70000");
    assert_eq!(err("--netns /x -a 300.1.1.1"), "Invalid address: 300.1.1.1");
    assert_eq!(
        err("--netns /x -n 255.0.255.0"),
        "Invalid netmask: 255.0.255.0"
    );
    assert_eq!(
        err("--netns /x --ns-mac-addr 01:00:00:00:00:01"),
        "Invalid MAC address: 01:00:00:00:00:01"
    );
    assert_eq!(
        err("--netns /x --dns-forward 169.254.1.1 --dns-forward 169.254.1.3"),
        "Invalid DNS forwarding address: 169.254.1.3"
    );
}

#[test]
fn what_netyard_does_not_do_is_refused_with_the_reason() {
    assert!(err("--netns /x -6").contains("--ipv6-only"));
    assert!(err("--netns /x -F 3").contains("--fd"));
    assert!(err("--config-net").contains("no namespace"));
    assert!(err("--config-net sh -c true").contains("running a command (sh)"));
    assert!(err("--netns /x -t auto").contains("-t auto"));
    assert!(err("--netns /x -T 80").contains("-T"));
    assert!(err("--netns /x -U auto").contains("-U"));
    assert!(err("--netns /x --userns /u --netns-only").contains("Both --userns and --netns-only"));
}

#[test]
fn help_and_version_end_parsing() {
    assert_eq!(
        parse(args("--netns /x --help"), Ephemeral::default()),
        Ok(Parsed::Help)
    );
    assert_eq!(parse(args("-h"), Ephemeral::default()), Ok(Parsed::Help));
    assert_eq!(
        parse(args("--version --bogus"), Ephemeral::default()),
        Ok(Parsed::Version)
    );
}

#[test]
fn netmasks_take_both_spellings() {
    assert_eq!(netmask("24"), Some(24));
    assert_eq!(netmask("255.255.240.0"), Some(20));
    assert_eq!(netmask("255.255.255.255"), Some(32));
    assert_eq!(netmask("33"), None);
    assert_eq!(netmask("255.0.255.0"), None);
}
