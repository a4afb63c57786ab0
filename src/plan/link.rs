//! `link set`: the request's values as users write them (`20ms`, `1%`, `10mbit`) into a
//! link's spec, or the field at fault; and a spec back into canonical text for `link show`.

use netyard_api::model::LinkSettings;
use netyard_switch::impair::config::{
    self, fmt_loss_burst, fmt_ppb, fmt_rate, fmt_us, Distribution, Impairment,
};
use netyard_switch::impair::{Direction, LinkSpec};

use crate::error::DaemonError;

/// The link's spec after `req`: the direction(s) it names get its impairment whole (a value
/// left out is off, as with `tc qdisc replace`); the other direction and the carrier stay.
pub fn plan_link(req: &LinkSettings, current: &LinkSpec) -> Result<LinkSpec, DaemonError> {
    let dir = match req.direction.as_deref() {
        None => Direction::Out,
        Some(d) => d
            .parse::<Direction>()
            .map_err(|e| DaemonError::invalid("direction", e))?,
    };
    let imp = impairment(req)?;
    if imp.is_noop() {
        return Err(DaemonError::invalid(
            "link",
            "nothing to set: give at least one of delay, jitter, loss, loss_burst, duplicate, \
             corrupt, reorder, rate (link reset clears a link)",
        ));
    }
    let mut next = current.clone();
    if matches!(dir, Direction::Out | Direction::Both) {
        next.out = Some(imp.clone());
    }
    if matches!(dir, Direction::In | Direction::Both) {
        next.inbound = Some(imp);
    }
    Ok(next)
}

fn field<T>(
    name: &'static str,
    v: &Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, DaemonError> {
    v.as_deref()
        .map(|s| parse(s).map_err(|e| DaemonError::invalid(name, e)))
        .transpose()
}

/// One direction's impairment from the request's text, every value and rule checked.
pub fn impairment(req: &LinkSettings) -> Result<Impairment, DaemonError> {
    let distribution = match req.distribution.as_deref() {
        None | Some("normal") => Distribution::Normal,
        Some("uniform") => Distribution::Uniform,
        Some(d) => {
            return Err(DaemonError::invalid(
                "distribution",
                format!("{d:?} is not one of normal, uniform"),
            ))
        }
    };
    let imp = Impairment {
        delay_us: field("delay", &req.delay, config::parse_duration_us)?.unwrap_or(0),
        jitter_us: field("jitter", &req.jitter, config::parse_duration_us)?.unwrap_or(0),
        distribution,
        loss: field("loss", &req.loss, config::parse_percent)?.unwrap_or(0),
        loss_burst: field("loss_burst", &req.loss_burst, config::parse_loss_burst)?,
        duplicate: field("duplicate", &req.duplicate, config::parse_percent)?.unwrap_or(0),
        corrupt: field("corrupt", &req.corrupt, config::parse_percent)?.unwrap_or(0),
        reorder: field("reorder", &req.reorder, config::parse_percent)?.unwrap_or(0),
        rate_bps: field("rate", &req.rate, config::parse_rate_bps)?.unwrap_or(0),
        limit: req.limit.unwrap_or(config::DEFAULT_LIMIT),
        seed: req.seed,
    };
    imp.validate()
        .map_err(|e| DaemonError::invalid(e.field, e.reason))?;
    Ok(imp)
}

/// An impairment in canonical text: what `link show` prints, and `link set` reads back.
pub fn settings(i: &Impairment) -> LinkSettings {
    let nz_us = |v: u64| (v > 0).then(|| fmt_us(v));
    let nz_p = |v: u32| (v > 0).then(|| fmt_ppb(v));
    LinkSettings {
        direction: None,
        delay: nz_us(i.delay_us),
        jitter: nz_us(i.jitter_us),
        distribution: (i.jitter_us > 0).then(|| i.distribution.as_str().to_string()),
        loss: nz_p(i.loss),
        loss_burst: i.loss_burst.map(fmt_loss_burst),
        duplicate: nz_p(i.duplicate),
        corrupt: nz_p(i.corrupt),
        reorder: nz_p(i.reorder),
        rate: (i.rate_bps > 0).then(|| fmt_rate(i.rate_bps)),
        limit: Some(i.limit),
        seed: i.seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(f: impl FnOnce(&mut LinkSettings)) -> LinkSettings {
        let mut r = LinkSettings::default();
        f(&mut r);
        r
    }

    fn field_of(r: Result<LinkSpec, DaemonError>) -> String {
        match r {
            Err(e) => format!("{} | {e}", e.field().unwrap_or("-")),
            Ok(s) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn out_is_the_default_direction_and_the_other_one_stays() {
        let cur = LinkSpec {
            down: true,
            inbound: Some(Impairment {
                loss: 5,
                ..Impairment::default()
            }),
            ..LinkSpec::default()
        };
        let next = plan_link(&req(|r| r.delay = Some("20ms".into())), &cur).unwrap();
        assert_eq!(next.out.as_ref().map(|i| i.delay_us), Some(20_000));
        assert_eq!(next.inbound, cur.inbound);
        assert!(next.down);
        let both = plan_link(
            &req(|r| {
                r.direction = Some("both".into());
                r.rate = Some("10mbit".into());
            }),
            &cur,
        )
        .unwrap();
        assert_eq!(both.out, both.inbound);
        assert_eq!(
            both.out.map(|i| (i.rate_bps, i.loss)),
            Some((10_000_000, 0))
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cur = LinkSpec::default();
        let cases: Vec<(LinkSettings, &str)> = vec![
            (
                req(|r| r.loss = Some("120%".into())),
                "loss | loss: \"120%\" is above 100%",
            ),
            (
                req(|r| r.delay = Some("-3ms".into())),
                "delay | delay: \"-3ms\" is negative",
            ),
            (
                req(|r| r.rate = Some("10parsecs".into())),
                "rate | rate: \"10parsecs\": unknown unit",
            ),
            (req(|r| r.direction = Some("up".into())), "direction | "),
            (
                req(|r| r.distribution = Some("pareto".into())),
                "distribution | ",
            ),
            (
                req(|r| r.reorder = Some("5%".into())),
                "reorder | reorder: needs a delay",
            ),
            (
                req(|r| {
                    r.loss = Some("1%".into());
                    r.loss_burst = Some("1%,10%".into());
                }),
                "loss_burst | ",
            ),
            (
                req(|r| {
                    r.delay = Some("1ms".into());
                    r.limit = Some(0);
                }),
                "limit | ",
            ),
            (req(|_| {}), "link | link: nothing to set"),
        ];
        for (r, want) in cases {
            let got = field_of(plan_link(&r, &cur));
            assert!(got.starts_with(want), "{r:?}: {got}");
        }
    }

    #[test]
    fn shown_settings_read_back_to_the_same_impairment() {
        let r = req(|r| {
            r.delay = Some("50ms".into());
            r.jitter = Some("10ms".into());
            r.distribution = Some("uniform".into());
            r.loss_burst = Some("1%,25%".into());
            r.duplicate = Some("0.1%".into());
            r.corrupt = Some("0.01%".into());
            r.reorder = Some("2%".into());
            r.rate = Some("20mbit".into());
            r.limit = Some(500);
            r.seed = Some(7);
        });
        let imp = impairment(&r).unwrap();
        let shown = settings(&imp);
        assert_eq!(impairment(&shown).unwrap(), imp);
        assert_eq!(shown.delay.as_deref(), Some("50ms"));
        assert_eq!(shown.corrupt.as_deref(), Some("0.01%"));
        assert_eq!(shown.rate.as_deref(), Some("20mbit"));
    }

    #[test]
    fn a_spec_saves_only_what_is_set_and_reads_back() {
        let spec = plan_link(
            &req(|r| {
                r.delay = Some("20ms".into());
                r.loss = Some("1%".into());
            }),
            &LinkSpec::default(),
        )
        .unwrap();
        let j = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            j,
            r#"{"out":{"delay_us":20000,"distribution":"normal","loss":10000000,"limit":1000}}"#
        );
        assert_eq!(serde_json::from_str::<LinkSpec>(&j).unwrap(), spec);
        assert!(serde_json::from_str::<LinkSpec>("{}").unwrap().is_clear());
    }
}
