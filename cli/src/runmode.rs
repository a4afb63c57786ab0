//! `netyard run --network ...`: which of Docker's network modes the flags ask for, checked
//! before anything is created (pure, unit-tested).

/// The network mode of one `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// A fresh namespace with only `lo` up.
    None,
    /// The daemon's own network namespace.
    Host,
    /// The namespace of the endpoint with this name.
    Container(String),
    /// A fresh namespace attached to each network in order: eth0, eth1, ...
    Networks(Vec<String>),
}

/// The endpoint options of `run` that only make sense with networks to attach to.
#[derive(Debug, Clone, Default)]
pub struct EndpointFlags {
    pub ip: bool,
    pub mac: bool,
    pub alias: bool,
    pub publish: bool,
    pub kind: bool,
    pub no_offload: bool,
}

/// A refused combination: the flag at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ModeError {
    pub flag: &'static str,
    pub reason: String,
}

fn err(flag: &'static str, reason: impl Into<String>) -> ModeError {
    ModeError {
        flag,
        reason: reason.into(),
    }
}

/// Reads the `--network` values (in order) and the endpoint options given: `none`, `host` and
/// `container:NAME` stand alone and take no endpoint option (as Docker refuses `-p` with them:
/// there is no network of the run's own to publish from or address).
pub fn plan(networks: &[String], flags: &EndpointFlags) -> Result<RunMode, ModeError> {
    let special = |n: &str| n == "none" || n == "host" || n.starts_with("container:");
    let mode = match networks {
        [] => {
            return Err(err(
                "--network",
                "give a network, none, host or container:NAME",
            ))
        }
        [one] if one == "none" => RunMode::None,
        [one] if one == "host" => RunMode::Host,
        [one] if one.starts_with("container:") => {
            let name = &one["container:".len()..];
            if name.is_empty() {
                return Err(err(
                    "--network",
                    "container: needs the name of an endpoint (container:NAME)",
                ));
            }
            RunMode::Container(name.to_string())
        }
        many => {
            if let Some(s) = many.iter().find(|n| special(n)) {
                return Err(err(
                    "--network",
                    format!("{s:?} cannot be combined with other networks"),
                ));
            }
            for (i, n) in many.iter().enumerate() {
                if many[..i].contains(n) {
                    return Err(err("--network", format!("{n:?} is given twice")));
                }
            }
            return Ok(RunMode::Networks(many.to_vec()));
        }
    };
    let what = match &mode {
        RunMode::None => "with --network none (the namespace has no network)".to_string(),
        RunMode::Host => "with --network host (the run has no interface of its own)".to_string(),
        RunMode::Container(n) => format!("with --network container:{n} (it uses {n}'s interfaces)"),
        RunMode::Networks(_) => unreachable!("returned above"),
    };
    for (given, flag) in [
        (flags.publish, "--publish"),
        (flags.ip, "--ip"),
        (flags.mac, "--mac"),
        (flags.alias, "--alias"),
        (flags.kind, "--kind"),
        (flags.no_offload, "--no-offload"),
    ] {
        if given {
            return Err(err(flag, format!("not available {what}")));
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_mode_is_read_from_its_network_value() {
        let none = EndpointFlags::default();
        assert_eq!(plan(&nets(&["none"]), &none), Ok(RunMode::None));
        assert_eq!(plan(&nets(&["host"]), &none), Ok(RunMode::Host));
        assert_eq!(
            plan(&nets(&["container:web"]), &none),
            Ok(RunMode::Container("web".into()))
        );
        assert_eq!(
            plan(&nets(&["a", "b"]), &none),
            Ok(RunMode::Networks(nets(&["a", "b"])))
        );
    }

    #[test]
    fn special_modes_stand_alone_and_take_no_endpoint_option() {
        let none = EndpointFlags::default();
        for bad in [&["none", "a"][..], &["a", "host"], &["a", "container:x"]] {
            assert_eq!(plan(&nets(bad), &none).unwrap_err().flag, "--network");
        }
        assert_eq!(
            plan(&nets(&["container:"]), &none).unwrap_err().flag,
            "--network"
        );
        assert_eq!(
            plan(&nets(&["a", "a"]), &none).unwrap_err().flag,
            "--network"
        );
        let publish = EndpointFlags {
            publish: true,
            ..Default::default()
        };
        let e = plan(&nets(&["none"]), &publish).unwrap_err();
        assert_eq!(e.flag, "--publish");
        assert!(e.to_string().contains("--network none"), "{e}");
        let ip = EndpointFlags {
            ip: true,
            ..Default::default()
        };
        assert_eq!(plan(&nets(&["host"]), &ip).unwrap_err().flag, "--ip");
        assert_eq!(plan(&nets(&["container:w"]), &ip).unwrap_err().flag, "--ip");
        // On networks the options are the first network's.
        assert!(plan(&nets(&["a", "b"]), &publish).is_ok());
    }
}
