//! What a link's impairment *is*: plain serde data (the daemon keeps it in its state file),
//! the parsers of the values users write (`20ms`, `1%`, `10mbit`, as tc writes them) and the
//! checks across fields. No I/O.

use serde::{Deserialize, Serialize};

/// A probability in parts per billion (1% = 10 000 000): an integer, so specs compare and
/// save exactly, and fine enough for netem's smallest useful values (0.0001%).
pub type Ppb = u32;

/// One in a billion units: 100%.
pub const PPB_ONE: Ppb = 1_000_000_000;

/// Longest delay (and delay plus jitter) a link may add: beyond a minute a lab is measuring
/// its own patience, and frames held that long pin buffers for nothing.
pub const MAX_DELAY_US: u64 = 60_000_000;
/// Highest rate limit, bits per second (100 Gbit/s: above anything netyard forwards).
pub const MAX_RATE_BPS: u64 = 100_000_000_000;
/// netem's default queue limit, packets.
pub const DEFAULT_LIMIT: u32 = 1000;
/// Largest queue limit, packets.
pub const MAX_LIMIT: u32 = 1_000_000;

/// How jitter spreads the delay around its mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Normal around the delay with the jitter as standard deviation, cut at four deviations
    /// (netem's `normal` table spans the same range). tc-netem(8) documents normal as the
    /// default.
    #[default]
    Normal,
    /// Uniform over `delay - jitter .. delay + jitter`.
    Uniform,
}

impl Distribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Normal => "normal",
            Distribution::Uniform => "uniform",
        }
    }
}

/// The simple Gilbert model of bursty loss (netem's `loss gemodel p r`): a good state that
/// loses nothing and a bad state that loses everything; each packet first moves between them
/// (good to bad with `p_bad`, bad to good with `p_good`), then is lost if the state is bad.
/// The mean loss is `p_bad / (p_bad + p_good)`, the mean burst `1 / p_good` packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossBurst {
    pub p_bad: Ppb,
    pub p_good: Ppb,
}

/// One direction's impairment, every value already checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    /// Mean added delay, microseconds.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delay_us: u64,
    /// Delay spread, microseconds.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub jitter_us: u64,
    #[serde(default)]
    pub distribution: Distribution,
    /// Independent loss per wire packet.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub loss: Ppb,
    /// Bursty loss instead of `loss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_burst: Option<LossBurst>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub duplicate: Ppb,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub corrupt: Ppb,
    /// Share of packets sent at once while the others wait their delay.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub reorder: Ppb,
    /// Bits per second on the wire (0: unlimited).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_bps: u64,
    /// Most packets held at once (delayed or waiting for the rate); beyond it they drop.
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Seed of the link's random draws (a repeatable run); None: a fresh one each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn default_limit() -> u32 {
    DEFAULT_LIMIT
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            delay_us: 0,
            jitter_us: 0,
            distribution: Distribution::default(),
            loss: 0,
            loss_burst: None,
            duplicate: 0,
            corrupt: 0,
            reorder: 0,
            rate_bps: 0,
            limit: DEFAULT_LIMIT,
            seed: None,
        }
    }
}

/// A field at fault and why, for the API's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

impl Impairment {
    /// Does it change anything at all?
    pub fn is_noop(&self) -> bool {
        Impairment {
            limit: self.limit,
            seed: self.seed,
            distribution: self.distribution,
            ..Impairment::default()
        } == *self
    }

    /// Does it decide per packet (loss, duplication, corruption), so that a GSO super-frame
    /// must be cut into its wire packets first?
    pub fn per_packet_faults(&self) -> bool {
        self.loss > 0 || self.loss_burst.is_some() || self.duplicate > 0 || self.corrupt > 0
    }

    /// Checks the rules across fields (each value alone was checked by its parser, but a
    /// spec read from a file or built in code is checked again here).
    pub fn validate(&self) -> Result<(), FieldError> {
        for (field, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("reorder", self.reorder),
        ] {
            if p > PPB_ONE {
                return Err(bad(field, format!("{} is above 100%", fmt_ppb(p))));
            }
        }
        if let Some(b) = self.loss_burst {
            if self.loss > 0 {
                return Err(bad(
                    "loss_burst",
                    "cannot be combined with loss: a link has one loss model",
                ));
            }
            if b.p_bad == 0 || b.p_bad > PPB_ONE {
                return Err(bad("loss_burst", "P_bad must be above 0% and at most 100%"));
            }
            if b.p_good == 0 || b.p_good > PPB_ONE {
                return Err(bad(
                    "loss_burst",
                    "P_good must be above 0% (else the link never leaves the bad state) and at most 100%",
                ));
            }
        }
        if self.delay_us > MAX_DELAY_US {
            return Err(bad(
                "delay",
                format!("{} is above 60s", fmt_us(self.delay_us)),
            ));
        }
        if self.delay_us.saturating_add(self.jitter_us) > MAX_DELAY_US {
            return Err(bad("jitter", "delay plus jitter is above 60s"));
        }
        if self.reorder > 0 && self.delay_us == 0 {
            return Err(bad(
                "reorder",
                "needs a delay: a reordered packet is one sent at once while the others wait",
            ));
        }
        if self.rate_bps > MAX_RATE_BPS {
            return Err(bad("rate", "is above 100gbit"));
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(bad("limit", format!("must be 1 to {MAX_LIMIT} packets")));
        }
        Ok(())
    }
}

/// Both directions of a link and its carrier, as the daemon keeps them. "Out" is what the
/// port sends into the switch (an endpoint's transmit, as netem on its own interface would
/// see it), "in" what the switch sends to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Carrier off: every frame both ways is dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<Impairment>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Impairment>,
}

impl LinkSpec {
    /// Nothing set: the link is a plain port.
    pub fn is_clear(&self) -> bool {
        *self == LinkSpec::default()
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        for i in self.out.iter().chain(self.inbound.iter()) {
            i.validate()?;
        }
        Ok(())
    }
}

/// Which way a setting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Direction, String> {
        match s {
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            "both" => Ok(Direction::Both),
            _ => Err(format!("{s:?} is not one of out, in, both")),
        }
    }
}

// ---- parsers of the values users write ----

/// A duration as tc writes it: a non-negative decimal number and a unit (`us`/`usec`,
/// `ms`/`msec`, `s`/`sec`). A bare number is refused (tc reads it as microseconds, which
/// surprises everyone who meant milliseconds).
pub fn parse_duration_us(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "us" | "usec" | "usecs" => 1.0,
        "ms" | "msec" | "msecs" => 1e3,
        "s" | "sec" | "secs" => 1e6,
        "" => return Err(format!("{s:?} needs a unit (us, ms or s)")),
        u => return Err(format!("{s:?}: unknown unit {u:?} (us, ms or s)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 20ms"))?;
    let us = (v * scale).round();
    if !(0.0..=(MAX_DELAY_US as f64)).contains(&us) {
        return Err(format!("{s:?} is above 60s"));
    }
    Ok(us as u64)
}

/// A percentage (`1%`, `0.01%`, or `1` meaning 1% as tc reads it), 0% to 100%.
pub fn parse_percent(s: &str) -> Result<Ppb, String> {
    let t = s.trim();
    let num = t.strip_suffix('%').unwrap_or(t).trim();
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 1%"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    if v > 100.0 {
        return Err(format!("{s:?} is above 100%"));
    }
    Ok((v * 1e7).round() as Ppb)
}

/// A rate as tc writes it: bits per second with `bit`, `kbit`, `mbit`, `gbit`, `tbit` (powers
/// of 1000), `kibit`.. (powers of 1024), or bytes per second with `bps`, `kbps`, `mbps`,
/// `gbps` (tc's meaning: bytes). No unit is refused.
pub fn parse_rate_bps(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        "" => return Err(format!("{s:?} needs a unit (kbit, mbit, gbit; kbps.. are bytes)")),
        u => return Err(format!("{s:?}: unknown unit {u:?} (bit, kbit, mbit, gbit, tbit, kibit.., bps, kbps, mbps, gbps)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate such as 10mbit"))?;
    let bps = (v * scale).round();
    if bps < 1.0 {
        return Err(format!("{s:?} is 0 (leave the rate out for no limit)"));
    }
    if bps > MAX_RATE_BPS as f64 {
        return Err(format!("{s:?} is above 100gbit"));
    }
    Ok(bps as u64)
}

/// `P_bad,P_good`, two percentages.
pub fn parse_loss_burst(s: &str) -> Result<LossBurst, String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?} is not P_bad,P_good (two percentages, e.g. 1%,30%)"))?;
    Ok(LossBurst {
        p_bad: parse_percent(a).map_err(|e| format!("P_bad: {e}"))?,
        p_good: parse_percent(b).map_err(|e| format!("P_good: {e}"))?,
    })
}

// ---- canonical text of each value (what `link show` prints and `link set` reads back) ----

pub fn fmt_us(us: u64) -> String {
    if us % 1_000_000 == 0 && us > 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else if us > 1000 {
        format!("{}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

pub fn fmt_ppb(p: Ppb) -> String {
    format!("{}%", f64::from(p) / 1e7)
}

pub fn fmt_rate(bps: u64) -> String {
    for (unit, scale) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1000)] {
        if bps >= scale && bps % scale == 0 {
            return format!("{}{unit}", bps / scale);
        }
    }
    if bps >= 1_000_000 {
        return format!("{}mbit", bps as f64 / 1e6);
    }
    if bps >= 1000 {
        return format!("{}kbit", bps as f64 / 1e3);
    }
    format!("{bps}bit")
}

pub fn fmt_loss_burst(b: LossBurst) -> String {
    format!("{},{}", fmt_ppb(b.p_bad), fmt_ppb(b.p_good))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_are_never_negative() {
        assert_eq!(parse_duration_us("20ms"), Ok(20_000));
        assert_eq!(parse_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration_us("250us"), Ok(250));
        assert_eq!(parse_duration_us("10msec"), Ok(10_000));
        assert_eq!(parse_duration_us("0ms"), Ok(0));
        assert!(parse_duration_us("-3ms").unwrap_err().contains("negative"));
        assert!(parse_duration_us("20")
            .unwrap_err()
            .contains("needs a unit"));
        assert!(parse_duration_us("20 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_us("61s").unwrap_err().contains("above 60s"));
        assert!(parse_duration_us("ms").is_err());
        assert!(parse_duration_us("1.2.3ms").is_err());
    }

    #[test]
    fn percentages_are_zero_to_a_hundred() {
        assert_eq!(parse_percent("1%"), Ok(10_000_000));
        assert_eq!(parse_percent("0.01%"), Ok(100_000));
        assert_eq!(parse_percent("100%"), Ok(PPB_ONE));
        assert_eq!(parse_percent("2"), Ok(20_000_000));
        assert!(parse_percent("120%").unwrap_err().contains("above 100%"));
        assert!(parse_percent("-1%").unwrap_err().contains("negative"));
        assert!(parse_percent("lots").is_err());
        assert!(parse_percent("NaN%").is_err());
    }

    #[test]
    fn rates_read_as_tc_reads_them() {
        assert_eq!(parse_rate_bps("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate_bps("20Mbit"), Ok(20_000_000));
        assert_eq!(parse_rate_bps("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate_bps("512kibit"), Ok(524_288));
        assert_eq!(
            parse_rate_bps("1mbps"),
            Ok(8_000_000),
            "bps is bytes, as in tc"
        );
        assert!(parse_rate_bps("10parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_rate_bps("10").unwrap_err().contains("needs a unit"));
        assert!(parse_rate_bps("0mbit").unwrap_err().contains("is 0"));
        assert!(parse_rate_bps("-1mbit").unwrap_err().contains("negative"));
        assert!(parse_rate_bps("1tbit").unwrap_err().contains("above"));
    }

    #[test]
    fn canonical_text_reads_back_to_the_same_value() {
        for us in [0, 1, 999, 1000, 20_000, 1_500, 2_500_000, 3_000_000] {
            assert_eq!(parse_duration_us(&fmt_us(us)), Ok(us), "{}", fmt_us(us));
        }
        for p in [1, 100_000, 10_000_000, 123_456_789, PPB_ONE] {
            assert_eq!(parse_percent(&fmt_ppb(p)), Ok(p), "{}", fmt_ppb(p));
        }
        for r in [1, 999, 1000, 1500, 20_000_000, 1_250_000, 10_000_000_000] {
            assert_eq!(parse_rate_bps(&fmt_rate(r)), Ok(r), "{}", fmt_rate(r));
        }
        let b = parse_loss_burst("1%,30%").unwrap();
        assert_eq!(parse_loss_burst(&fmt_loss_burst(b)), Ok(b));
        assert!(parse_loss_burst("1%").is_err());
        assert!(parse_loss_burst("1%,x").unwrap_err().starts_with("P_good"));
    }

    #[test]
    fn cross_field_rules_name_the_field() {
        let ok = Impairment {
            delay_us: 10_000,
            reorder: 10_000_000,
            ..Impairment::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let no_delay = Impairment {
            reorder: 10_000_000,
            ..Impairment::default()
        };
        assert_eq!(no_delay.validate().unwrap_err().field, "reorder");
        let both_losses = Impairment {
            loss: 1,
            loss_burst: Some(LossBurst {
                p_bad: 1,
                p_good: 1,
            }),
            ..Impairment::default()
        };
        assert_eq!(both_losses.validate().unwrap_err().field, "loss_burst");
        let stuck = Impairment {
            loss_burst: Some(LossBurst {
                p_bad: 1,
                p_good: 0,
            }),
            ..Impairment::default()
        };
        assert_eq!(stuck.validate().unwrap_err().field, "loss_burst");
        let over = Impairment {
            loss: PPB_ONE + 1,
            ..Impairment::default()
        };
        assert_eq!(over.validate().unwrap_err().field, "loss");
        let zero_limit = Impairment {
            limit: 0,
            ..Impairment::default()
        };
        assert_eq!(zero_limit.validate().unwrap_err().field, "limit");
        let long = Impairment {
            delay_us: MAX_DELAY_US,
            jitter_us: 1,
            ..Impairment::default()
        };
        assert_eq!(long.validate().unwrap_err().field, "jitter");
    }
}
