//! pasta(1)'s port forwarding SPEC, as `-t`/`-u`/`-T`/`-U` take it: pure parsing, no sockets.
//!
//! A SPEC is `none`, `auto`, `all` (passt only: refused here, as pasta refuses it) or a
//! comma-separated list of items, each
//!
//! ```text
//! [ADDR[%IF]/ | %IF/] PORT[-END][:TARGET[-END]]      forward PORT..END to TARGET..
//! ~PORT[-END]                                         exclude PORT..END
//! ```
//!
//! The address prefix applies to the whole list. A list of exclusions only means every
//! non-ephemeral port but those. Repeated options of one letter add up; `none`/`auto` may only
//! stand alone. Errors read as pasta's own ("Invalid port specifier SPEC"), since that is what
//! Podman shows its user.

use std::net::IpAddr;

pub use netyard_api::portspec::PortRange;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// One forwarded range: host ports `host` (on `addr`/`ifname` when given) to the guest ports
/// starting at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub addr: Option<IpAddr>,
    pub ifname: Option<String>,
    pub host: PortRange,
    pub target: u16,
}

impl Forward {
    /// The guest port `host_port` goes to (`host_port` must lie in `self.host`).
    pub fn target_of(&self, host_port: u16) -> u16 {
        self.target
            .wrapping_add(host_port.wrapping_sub(self.host.start))
    }
}

/// What the options of one letter (`-t`, `-u`, `-T` or `-U`) asked for so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PortMode {
    /// Not given: pasta's default is `auto`.
    #[default]
    Unset,
    None,
    Auto,
    /// Forward these (non-overlapping, in the order given).
    Spec(Vec<Forward>),
}

/// Why a SPEC is refused, worded as pasta words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error("Invalid port specifier {0}")]
    Invalid(String),
    #[error("'all' port forwarding is only allowed for passt")]
    AllNotPasta,
    #[error("Port forwarding mode '{0}' conflicts with previous mode")]
    ModeConflict(&'static str),
    #[error("Specific ports cannot be specified together with all/none/auto")]
    SpecAfterMode,
    #[error("Can't forward port 0 for option '-{opt} {spec}'")]
    PortZero { opt: char, spec: String },
    #[error("Overlapping port specifier {0}")]
    Overlap(String),
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), which an
/// exclusion-only SPEC leaves out as pasta does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ephemeral {
    pub first: u16,
    pub last: u16,
}

impl Default for Ephemeral {
    /// The kernel's default range.
    fn default() -> Self {
        Ephemeral {
            first: 32768,
            last: 60999,
        }
    }
}

impl Ephemeral {
    /// Parses `/proc/sys/net/ipv4/ip_local_port_range` ("32768\t60999").
    pub fn parse(text: &str) -> Option<Ephemeral> {
        let mut it = text.split_whitespace().map(|s| s.parse::<u16>());
        match (it.next(), it.next()) {
            (Some(Ok(first)), Some(Ok(last))) if first <= last => Some(Ephemeral { first, last }),
            _ => None,
        }
    }
}

/// Adds the SPEC of one `-OPT SPEC` option to what `mode` holds.
pub fn add(
    mode: &mut PortMode,
    opt: char,
    spec: &str,
    ephemeral: Ephemeral,
) -> Result<(), PortSpecError> {
    match spec {
        "none" | "auto" => {
            if *mode != PortMode::Unset {
                return Err(PortSpecError::ModeConflict(if spec == "none" {
                    "none"
                } else {
                    "auto"
                }));
            }
            *mode = if spec == "none" {
                PortMode::None
            } else {
                PortMode::Auto
            };
            return Ok(());
        }
        "all" => return Err(PortSpecError::AllNotPasta),
        _ => {}
    }
    let mut list = match std::mem::take(mode) {
        PortMode::Unset => Vec::new(),
        PortMode::Spec(list) => list,
        other => {
            *mode = other;
            return Err(PortSpecError::SpecAfterMode);
        }
    };
    let result = parse_list(opt, spec, ephemeral).and_then(|new| {
        for f in &new {
            if list.iter().any(|g| overlaps(&g.host, &f.host)) {
                return Err(PortSpecError::Overlap(spec.to_string()));
            }
            list.push(f.clone());
        }
        Ok(())
    });
    *mode = PortMode::Spec(list);
    result
}

fn overlaps(a: &PortRange, b: &PortRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// Parses one SPEC that is a list (not `none`/`auto`/`all`) into forwards, exclusions applied.
pub fn parse_list(
    opt: char,
    spec: &str,
    ephemeral: Ephemeral,
) -> Result<Vec<Forward>, PortSpecError> {
    let invalid = || PortSpecError::Invalid(spec.to_string());
    let (addr, ifname, list) = split_prefix(spec).ok_or_else(invalid)?;
    let mut include: Vec<(PortRange, u16)> = Vec::new();
    let mut exclude: Vec<PortRange> = Vec::new();
    for item in list.split(',') {
        if let Some(x) = item.strip_prefix('~') {
            let r = parse_range(x).ok_or_else(invalid)?;
            if exclude.iter().any(|e| overlaps(e, &r)) {
                return Err(PortSpecError::Overlap(spec.to_string()));
            }
            exclude.push(r);
            continue;
        }
        let (from, to) = match item.split_once(':') {
            Some((a, b)) => (
                parse_range(a).ok_or_else(invalid)?,
                parse_range(b).ok_or_else(invalid)?,
            ),
            None => {
                let r = parse_range(item).ok_or_else(invalid)?;
                (r, r)
            }
        };
        if from.end - from.start != to.end - to.start {
            return Err(invalid());
        }
        if from.start == 0 || to.start == 0 {
            return Err(PortSpecError::PortZero {
                opt,
                spec: spec.to_string(),
            });
        }
        if include.iter().any(|(r, _)| overlaps(r, &from)) {
            return Err(PortSpecError::Overlap(spec.to_string()));
        }
        include.push((from, to.start));
    }
    if include.is_empty() {
        // Exclusions only: every port but the ephemeral ones and those excluded.
        let mut all = Vec::new();
        if ephemeral.first > 1 {
            all.push((
                PortRange {
                    start: 1,
                    end: ephemeral.first - 1,
                },
                1,
            ));
        }
        if ephemeral.last < u16::MAX {
            let start = ephemeral.last + 1;
            all.push((
                PortRange {
                    start,
                    end: u16::MAX,
                },
                start,
            ));
        }
        include = all;
    }
    let mut out = Vec::new();
    for (range, target) in include {
        for piece in subtract(range, &exclude) {
            out.push(Forward {
                addr,
                ifname: ifname.clone(),
                host: piece,
                target: target + (piece.start - range.start),
            });
        }
    }
    Ok(out)
}

/// Splits `[ADDR[%IF]/]LIST` or `%IF/LIST`; None when the prefix is not an address.
fn split_prefix(spec: &str) -> Option<(Option<IpAddr>, Option<String>, &str)> {
    let Some((prefix, list)) = spec.split_once('/') else {
        return Some((None, None, spec));
    };
    let (addr, ifname) = match prefix.split_once('%') {
        Some((a, i)) => (a, Some(i)),
        None => (prefix, None),
    };
    let ifname = match ifname {
        Some(i) if i.len() > IFNAME_MAX => return None,
        Some("") | None => None,
        Some(i) => Some(i.to_string()),
    };
    let addr = match addr {
        "" if prefix.starts_with('%') => None,
        a => {
            let a = a
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(a);
            Some(a.parse::<IpAddr>().ok()?)
        }
    };
    Some((addr, ifname, list))
}

/// `PORT` or `PORT-END`, decimal, END not below PORT.
fn parse_range(s: &str) -> Option<PortRange> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let num = |t: &str| {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse::<u16>().ok()
    };
    let (start, end) = (num(a)?, num(b)?);
    (start <= end).then_some(PortRange { start, end })
}

/// `range` minus every range of `holes`, in order.
fn subtract(range: PortRange, holes: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    let mut next = u32::from(range.start);
    let end = u32::from(range.end);
    let mut sorted: Vec<&PortRange> = holes.iter().filter(|h| overlaps(h, &range)).collect();
    sorted.sort_by_key(|h| h.start);
    for h in sorted {
        let (hs, he) = (u32::from(h.start), u32::from(h.end));
        if hs > next {
            out.push(piece(next, hs - 1));
        }
        next = next.max(he + 1);
    }
    if next <= end {
        out.push(piece(next, end));
    }
    out
}

fn piece(start: u32, end: u32) -> PortRange {
    // Both bounds come from u16 ranges, so they fit.
    PortRange {
        start: u16::try_from(start).unwrap_or(u16::MAX),
        end: u16::try_from(end).unwrap_or(u16::MAX),
    }
}

/// The forwards of `-t` (`tcp`) and `-u` (`udp`) as the daemon's published-port SPECs
/// (`[HOSTIP:]HOST[-END]:CTR[-END]/PROTO`, Docker's form, which `ports::parse_specs` takes):
/// one SPEC per range. A forward without an address binds every address of the host, as
/// pasta's does. An interface scope (`%IF`) has no SPEC form and is dropped (the caller logs
/// it): the port is bound on the address alone.
pub fn publish_specs(tcp: &PortMode, udp: &PortMode) -> Vec<String> {
    let mut out = Vec::new();
    for (mode, proto) in [(tcp, "tcp"), (udp, "udp")] {
        let PortMode::Spec(list) = mode else {
            continue;
        };
        for f in list {
            let last_target = f.target_of(f.host.end);
            let host_ip = match f.addr {
                Some(IpAddr::V4(a)) => format!("{a}:"),
                Some(IpAddr::V6(a)) => format!("[{a}]:"),
                None => String::new(),
            };
            out.push(format!(
                "{host_ip}{}-{}:{}-{}/{proto}",
                f.host.start, f.host.end, f.target, last_target
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
