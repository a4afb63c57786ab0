//! `netyard top`: every port's packets, bytes and drops per second, the busiest egress flows
//! and the resolver's query rate, refreshed every `--interval` in the terminal (ratatui over
//! crossterm), or one reading as JSON with `--once --json`.
//!
//! It works over the API only (`/v1/stats`, `/v1/endpoints`, `/v1/flows`, `/v1/dns`), like
//! any client: a rate is the difference of two samples over the time between them
//! ([`rates::rates`], pure and unit-tested). The live view leaves the terminal as it found it
//! on `q`, Esc, Ctrl-C (a key in raw mode, not a signal), SIGTERM, SIGINT, SIGHUP, an error
//! or a panic (ratatui's panic hook).

pub mod rates;
mod view;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use hyper::StatusCode;
use serde::Serialize;

use crate::client::{ApiClient, ClientError};
use crate::commands::CliError;
use rates::{NetworkFlows, Rates, Sample};

/// Reads everything `top` shows, the four requests at once.
pub async fn sample(c: &ApiClient) -> Result<Sample, CliError> {
    // The counters are read while the requests are served: the time they were sent stands
    // for all of them (the same offset in both samples of a rate).
    let at = Instant::now();
    let (ports, endpoints, flows, dns) = tokio::join!(
        c.get("/v1/stats"),
        c.get("/v1/endpoints"),
        c.get("/v1/flows"),
        c.get("/v1/dns"),
    );
    let dns = match dns {
        Ok(v) => Some(decode(v)?),
        // A daemon from before /v1/dns: everything but the DNS rate.
        Err(ClientError::Api(_, StatusCode::NOT_FOUND)) => None,
        Err(e) => return Err(e.into()),
    };
    let flows: Vec<NetworkFlows> = decode(flows?)?;
    Ok(Sample {
        at,
        ports: decode(ports?)?,
        endpoints: decode(endpoints?)?,
        flows,
        dns,
    })
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError::Decode(e.to_string()))
}

/// Two samples `interval` apart.
pub async fn measure(c: &ApiClient, interval: Duration) -> Result<Rates, CliError> {
    let first = sample(c).await?;
    tokio::time::sleep(interval).await;
    let second = sample(c).await?;
    rates::rates(&first, &second)
        .ok_or_else(|| CliError::Decode("the second sample was not taken after the first".into()))
}

/// `--once --json`: the rates and how they were measured.
#[derive(Serialize)]
struct Once<'a> {
    /// How the rates were measured, for a reader of the JSON.
    sampling: String,
    #[serde(flatten)]
    rates: &'a Rates,
}

/// `netyard top --once [--json]`.
pub async fn once(c: &ApiClient, interval: Duration, json: bool) -> Result<i32, CliError> {
    let r = measure(c, interval).await?;
    if json {
        let out = Once {
            sampling: format!(
                "two samples {:.3} s apart (--interval {}); each rate is the increase between \
                 them divided by that time",
                r.interval_s,
                interval.as_secs_f64()
            ),
            rates: &r,
        };
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => return Err(CliError::Decode(e.to_string())),
        }
    } else {
        print!("{}", view::text(&r));
    }
    Ok(0)
}

/// Does this key end the live view? `q`, Esc, and Ctrl-C (raw mode turns it into a key).
pub fn quits(k: &KeyEvent) -> bool {
    k.kind != KeyEventKind::Release
        && match k.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
            KeyCode::Char('c') | KeyCode::Char('C') => k.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Restores the terminal when dropped, whichever way the view ends.
struct Screen(ratatui::DefaultTerminal);

impl Drop for Screen {
    fn drop(&mut self) {
        if let Err(e) = ratatui::try_restore() {
            eprintln!("netyard top: restoring the terminal: {e}");
        }
    }
}

/// `netyard top`: the live view until `q`.
pub async fn live(c: &ApiClient, interval: Duration) -> Result<i32, CliError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "netyard top needs a terminal; use `netyard top --once --json` for a reading".into(),
        ));
    }
    let io = |context: &str| {
        let context = context.to_string();
        move |source| CliError::Io { context, source }
    };
    // Signals from elsewhere end the view like `q` (the terminal restored); at the keyboard
    // raw mode makes Ctrl-C a key instead.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(io("installing a SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("installing a SIGINT handler"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(io("installing a SIGHUP handler"))?;
    let mut screen = Screen(ratatui::try_init().map_err(io("setting up the terminal"))?);
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = view::State {
        api: c.path().display().to_string(),
        interval,
        ..view::State::default()
    };
    let mut prev: Option<Sample> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match sample(c).await {
                    Ok(s) => {
                        state.rates = prev.as_ref().and_then(|p| rates::rates(p, &s));
                        state.error = None;
                        state.current = Some(s.clone());
                        prev = Some(s);
                    }
                    // The daemon may come back (a restart): keep trying, say why it is stale.
                    Err(e) => state.error = Some(e.to_string()),
                }
            }
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) if quits(&k) => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::Io { context: "reading the terminal".into(), source: e }),
                None => break,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => break,
        }
        screen
            .0
            .draw(|f| view::draw(f, &state))
            .map_err(io("drawing"))?;
    }
    drop(screen);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn q_escape_and_ctrl_c_quit_other_keys_do_not() {
        assert!(quits(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(!quits(&release));
    }
}
