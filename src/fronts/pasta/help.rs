//! `--help` and `--version`: pasta's layout (usage lines, one option a line with its
//! default), written for what netyard does with each option.

/// The pasta release whose command line this front speaks.
pub const PASTA_COMPAT: &str = "2025_05_03";

pub fn version() -> String {
    format!(
        "pasta {PASTA_COMPAT} (netyard {v})\n\
         netyard's pasta-compatible front: pasta's command line, netyard's data path.\n\
         Apache-2.0. This is free software; there is NO WARRANTY.\n",
        v = env!("CARGO_PKG_VERSION")
    )
}

pub fn usage(name: &str) -> String {
    format!(
        "\
Usage: {name} [OPTION]... PID
       {name} [OPTION]... --netns [PATH|NAME]

netyard's pasta front: serves the network namespace (of PID, at PATH, or
/run/netns/NAME) through a TAP device on netyard's data path, forks to the
background once the namespace is configured and ready, and quits when the
namespace goes away. Running a COMMAND in new namespaces is not supported.

  -d, --debug		Be verbose
      --trace		Be extra verbose, implies --debug
  -q, --quiet		Don't print informational messages
  -f, --foreground	Don't run in background
    default: run in background
  -l, --log-file PATH	Log (only) to given file
  --log-size BYTES	Accepted, no effect
  --runas UID|UID:GID 	Accepted, no effect: netyard keeps its user
  -h, --help		Display this help message and exit
  --version		Show version and exit
  -I, --ns-ifname NAME	namespace interface name
    default: same interface name as the host's default route, or eth0
  -F, --fd FD		Not supported
  -p, --pcap FILE	Accepted, no effect
  -P, --pid FILE	Write own PID to the given file
  -m, --mtu MTU	Assign MTU to the namespace interface
    a zero value leaves the TAP's own (1500)
    default: 65520
  -a, --address ADDR	Assign IPv4 address ADDR
    default: the second address of a private /24 that
             overlaps no host route (10.89.0.0/16 first)
  -n, --netmask MASK	Assign IPv4 MASK, dot-decimal or bits
    default: 24
  -M, --mac-addr ADDR	Accepted, no effect
  -g, --gateway ADDR	Pass IPv4 address as gateway
    default: the subnet's first address
  -i, --interface NAME	Accepted, no effect
  -o, --outbound ADDR	Accepted, no effect
  --outbound-if4 NAME	Accepted, no effect
  --outbound-if6 NAME	Accepted, no effect
  -D, --dns ADDR	Accepted, no effect (no DHCP)
  -S, --search LIST	Accepted, no effect (no DHCP)
  -H, --hostname NAME 	Accepted, no effect (no DHCP)
  --fqdn NAME		Accepted, no effect (no DHCP)
  --dhcp-dns		Accepted, no effect
  --dhcp-search	Accepted, no effect
  --map-host-loopback ADDR	Translate ADDR to refer to host loopback
    default: gateway address, unless --no-map-gw
  --map-guest-addr ADDR	Translate ADDR to the host's own address
    default: none
  --dns-forward ADDR	Forward DNS queries sent to ADDR
    default: don't forward DNS queries
  --dns-host ADDR	Host nameserver to direct queries to
    default: nameservers from host's /etc/resolv.conf
  --no-tcp, --no-udp, --no-icmp	Accepted, no effect
  --no-dhcp, --no-ndp, --no-dhcpv6, --no-ra	Accepted, no effect
  --freebind		Accepted, no effect
  --no-map-gw		Don't map gateway address to host
  -4, --ipv4-only	Enable IPv4 operation only (always the case)
  -6, --ipv6-only	Not supported
  -t, --tcp-ports SPEC	TCP port forwarding to namespace
    can be specified multiple times
    SPEC can be:
      'none': don't forward any ports
      a comma-separated list, optionally ranged with '-'
        and optional target ports after ':', with optional
        address specification suffixed by '/' and optional
        interface prefixed by '%', and exclusions prefixed
        by '~'. Examples:
        -t 22	Forward local port 22 to port 22 in netns
        -t 22:23	Forward local port 22 to port 23
        -t 22-80:32-90	Forward ports 22 to 80 to 32 to 90
        -t 192.0.2.1/5	Bind port 5 of 192.0.2.1 to namespace
        -t 5-25,~10-20	Forward ports 5 to 9, and 21 to 25
    'auto' is not supported
    default: none
    clients keep their own source address in the namespace
  -u, --udp-ports SPEC	UDP port forwarding to namespace
    SPEC is as described for TCP above
    default: none
  -T, --tcp-ns SPEC	'none' only
  -U, --udp-ns SPEC	'none' only
  --host-lo-to-ns-lo	Accepted, no effect
  --userns NSPATH 	Target user namespace to join
  --netns PATH|NAME	Target network namespace to join
  --netns-only		Don't join existing user namespace
    implied if PATH or NAME are given without --userns
  --no-netns-quit	Don't quit if filesystem-bound target
  			network namespace is deleted
  --config-net		Configure tap interface in namespace:
			address, default route, MTU, loopback up
			(a private subnet, not the host's address)
  --no-copy-routes	Accepted, no effect
  --no-copy-addrs	Accepted, no effect
  --ns-mac-addr ADDR	Set MAC address on tap interface
  --no-splice		Accepted, no effect
"
    )
}
