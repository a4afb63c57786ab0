//! `--help` and `--version`. Runtimes read them: Podman 4.x picks the flags it passes by
//! searching the help text for each option's long name, RootlessKit refuses a binary whose
//! help lacks `--netns-type` ("seems older than v0.4.0") and parses the version's first line.
//! So every option slirp4netns 1.2 has is listed under its own name, and the version's first
//! line is slirp4netns's; the lines after it say what actually runs.

/// The usage text (also printed after a refused command line).
pub fn usage() -> String {
    let lines: &[(&str, &str)] = &[
        (
            "-c, --configure",
            "configure the interface (address, default route, lo up)",
        ),
        (
            "-e, --exit-fd=FD",
            "exit when FD reports an event (the other end closed)",
        ),
        (
            "-r, --ready-fd=FD",
            "write \"1\" to FD once the interface is served, then close it",
        ),
        (
            "-m, --mtu=MTU",
            "MTU of the interface (default=1500, max=65521)",
        ),
        (
            "-6, --enable-ipv6",
            "dual stack: fd00::/64, gateway ::2, DNS ::3, guest ::100 (with -c)",
        ),
        (
            "-a, --api-socket=PATH",
            "serve add_hostfwd/list_hostfwd/remove_hostfwd on PATH",
        ),
        (
            "--cidr=CIDR",
            "the network (default=10.0.2.0/24; gateway .2, DNS .3, guest .100)",
        ),
        (
            "--disable-host-loopback",
            "the gateway address does not reach the host's 127.0.0.1",
        ),
        (
            "--netns-type=TYPE",
            "how to read PID|PATH ([path|pid], default=pid)",
        ),
        (
            "--userns-path=PATH",
            "the user namespace that owns the network namespace",
        ),
        (
            "--enable-sandbox",
            "accepted; no effect (netyard keeps its mount namespace)",
        ),
        (
            "--enable-seccomp",
            "accepted; no effect (no seccomp filter)",
        ),
        (
            "--outbound-addr=IPv4",
            "accepted; egress leaves by the host's routes",
        ),
        (
            "--outbound-addr6=IPv6",
            "accepted; egress leaves by the host's routes",
        ),
        (
            "--disable-dns",
            "no resolver at .3 or ::3 (the gateway still answers DNS)",
        ),
        (
            "--macaddress=MAC",
            "MAC address of the interface (only with -c)",
        ),
        ("--target-type=TYPE", "only netns ([netns], default=netns)"),
        ("-h, --help", "show this help and exit"),
        ("-v, --version", "show version and exit"),
    ];
    let mut s = String::from(
        "Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]\n\
         User-mode networking for unprivileged network namespaces (netyard's engine).\n\n",
    );
    for (opt, what) in lines {
        s.push_str(&format!("{opt:<25}{what}\n"));
    }
    s
}

/// The version text: slirp4netns's first line, then netyard's own.
pub fn version() -> String {
    format!(
        "slirp4netns version 1.2.0\nnetyard: {}\ncompatible with slirp4netns 1.2 (command line, ready/exit fds, API socket)\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_option_the_runtimes_look_for() {
        let h = usage();
        // Podman 4.x's and RootlessKit 1.x's feature checks.
        for o in [
            "--disable-host-loopback",
            "--mtu",
            "--enable-sandbox",
            "--enable-seccomp",
            "--cidr",
            "--outbound-addr",
            "--enable-ipv6",
            "--netns-type",
            "--api-socket",
        ] {
            assert!(h.contains(o), "{o}");
        }
        assert!(h.starts_with("Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]\n"));
    }

    #[test]
    fn the_version_reads_as_slirp4netns_1_2_then_names_netyard() {
        let v = version();
        let mut lines = v.lines();
        assert_eq!(lines.next(), Some("slirp4netns version 1.2.0"));
        assert!(lines.any(|l| l.starts_with("netyard: ")));
    }
}
