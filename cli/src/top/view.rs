//! What `top` shows: the live screen (ratatui widgets) and the same tables as text for
//! `--once` without `--json`.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

use super::rates::{FlowRate, PortRate, Rates, Sample};

/// Busiest flows shown.
pub const TOP_FLOWS: usize = 10;

/// What the live view knows.
#[derive(Debug, Default)]
pub struct State {
    pub api: String,
    pub interval: Duration,
    /// The latest sample (port names before the first rate).
    pub current: Option<Sample>,
    /// Rates between the last two samples.
    pub rates: Option<Rates>,
    /// Why the last sample failed, if it did.
    pub error: Option<String>,
}

/// A rate with an SI suffix, e.g. 1.25M.
pub fn si(v: f64) -> String {
    let (v, suffix) = match v {
        v if v >= 1e9 => (v / 1e9, "G"),
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    if suffix.is_empty() && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{suffix}")
    }
}

/// Bytes per second, e.g. 12.5MB/s.
pub fn bytes(v: f64) -> String {
    format!("{}B/s", si(v))
}

const PORT_HEADER: [&str; 8] = [
    "NETWORK", "ENDPOINT", "KIND", "RX PKT/S", "TX PKT/S", "RX", "TX", "DROPS/S",
];

fn port_cells(p: &PortRate) -> Vec<String> {
    let drops = match p
        .drops
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .filter(|_| p.drops_per_s > 0.0)
    {
        Some((reason, _)) => format!("{} ({reason})", si(p.drops_per_s)),
        None => si(p.drops_per_s),
    };
    vec![
        p.network.clone(),
        p.endpoint.clone(),
        p.kind.clone(),
        si(p.rx_packets_per_s),
        si(p.tx_packets_per_s),
        bytes(p.rx_bytes_per_s),
        bytes(p.tx_bytes_per_s),
        drops,
    ]
}

const FLOW_HEADER: [&str; 7] = [
    "NETWORK",
    "ENDPOINT",
    "PROTO",
    "DESTINATION",
    "STATE",
    "OUT",
    "IN",
];

fn flow_cells(f: &FlowRate) -> Vec<String> {
    vec![
        f.network.clone(),
        f.endpoint.clone(),
        f.protocol.clone(),
        f.destination.clone(),
        f.state.clone(),
        bytes(f.bytes_out_per_s),
        bytes(f.bytes_in_per_s),
    ]
}

fn dns_line(r: &Rates) -> String {
    match &r.dns {
        Some(d) => format!(
            "DNS {} queries/s: {} local, {} cached, {} forwarded, {} failed, {} NXDOMAIN",
            si(d.queries_per_s),
            si(d.local_per_s),
            si(d.cached_per_s),
            si(d.forwarded_per_s),
            si(d.failed_per_s),
            si(d.nxdomain_per_s)
        ),
        None => "DNS: the daemon does not serve /v1/dns".to_string(),
    }
}

/// The tables as text (`top --once`).
pub fn text(r: &Rates) -> String {
    let ports: Vec<Vec<String>> = r.ports.iter().map(port_cells).collect();
    let flows: Vec<Vec<String>> = r.flows.iter().take(TOP_FLOWS).map(flow_cells).collect();
    format!(
        "per second over {:.2} s\n{}\n\n{}\nBUSIEST FLOWS\n{}",
        r.interval_s,
        dns_line(r),
        crate::table::render(&PORT_HEADER, &ports),
        crate::table::render(&FLOW_HEADER, &flows)
    )
}

/// Draws the live view.
pub fn draw(f: &mut Frame, s: &State) {
    let ports: Vec<Vec<String>> = match (&s.rates, &s.current) {
        (Some(r), _) => r.ports.iter().map(port_cells).collect(),
        // One sample so far: the ports, no rates yet.
        (None, Some(c)) => c
            .ports
            .iter()
            .map(|p| {
                let mut row = vec![p.network.clone(), p.endpoint.clone(), p.kind.clone()];
                row.extend(std::iter::repeat_n("-".to_string(), 5));
                row
            })
            .collect(),
        (None, None) => Vec::new(),
    };
    let flows: Vec<Vec<String>> = s
        .rates
        .as_ref()
        .map(|r| r.flows.iter().take(TOP_FLOWS).map(flow_cells).collect())
        .unwrap_or_default();
    let status = match (&s.error, &s.rates) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(r)) => dns_line(r),
        (None, None) => "sampling...".to_string(),
    };
    let header = vec![
        Line::from(format!(
            "netyard top - {} - every {:.1} s - q quits",
            s.api,
            s.interval.as_secs_f64()
        )),
        Line::from(status),
    ];
    let flow_rows = flows.len().max(1) as u16 + 3;
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(flow_rows),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header), top);
    f.render_widget(
        table(&PORT_HEADER, ports, &[10, 16, 8, 9, 9, 11, 11, 14], "ports"),
        middle,
    );
    f.render_widget(
        table(
            &FLOW_HEADER,
            flows,
            &[10, 16, 6, 22, 12, 11, 11],
            "busiest flows",
        ),
        bottom,
    );
}

fn table<'a>(
    header: &[&'a str],
    rows: Vec<Vec<String>>,
    widths: &[u16],
    title: &'a str,
) -> Table<'a> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    Table::new(
        rows.into_iter().map(Row::new),
        widths.iter().map(|w| Constraint::Min(*w)),
    )
    .header(Row::new(header.to_vec()).style(bold))
    .block(Block::bordered().title(title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_si_suffixes() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(12.0), "12");
        assert_eq!(si(2.5), "2.5");
        assert_eq!(si(1250.0), "1.2k");
        assert_eq!(si(3_400_000.0), "3.4M");
        assert_eq!(bytes(1.5e9), "1.5GB/s");
    }
}
