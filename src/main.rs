//! The `netyard` binary: parse flags, dispatch. The daemon lives in the library; every other
//! command is an API client from `netyard-cli`.

use anyhow::Context;
use clap::Parser;
use netyard_cli::{
    commands, default_api_path, default_persistent_state_dir, ApiClient, Cli, Command, DaemonArgs,
    FdbCommand, LogFormat,
};

/// mimalloc instead of glibc's malloc: glibc kept what a round of 500 attaches and detaches
/// had freed (heap fragmented across its per-thread arenas; `malloc_trim` got back a third of
/// it), so the daemon's RSS grew round after round while heaptrack showed 1.4 MB live after
/// the detaches. mimalloc hands freed pages back to the kernel (MADV_DONTNEED), with the
/// options [`tune_allocator`] sets. The crate builds its C source with the `cc` crate: the C
/// compiler Rust's own linking needs, no system package.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults keep memory for speed: arenas committed up front (RSS 28 MiB at start
/// instead of 14, 69 MiB with 200 endpoints instead of 24; memory of a committed arena is not
/// purged) and freed pages purged 1 s later. Arenas are committed on demand through a
/// compile-time default (`MI_DEFAULT_ARENA_EAGER_COMMIT=0` in .cargo/config.toml: the first
/// arena exists before `main`); the purge delay is set here, to purge at once: the daemon
/// allocates little on its data path.
///
/// `page_max_reclaim` 0: a thread that frees into a page another (since idle or exited) thread
/// abandoned no longer adopts it while it already owns pages of that size class. With the
/// default (adopt always), what stayed resident after detaching 500 endpoints depended on
/// which thread happened to adopt which half-empty page: 25 to 45 MiB from one round to the
/// next (scale bench, 10 rounds). Not adopting lets the abandoned page empty and be purged:
/// 20.7 then 21-22.7 MiB every round (benches/README.md). The attach and teardown bursts run
/// on tokio's blocking threads, which is where the abandoned pages come from.
fn tune_allocator() {
    // The options' numbers in libmimalloc-sys 0.1.49's mimalloc v3 (c_src/mimalloc/v3/include/
    // mimalloc.h, `mi_option_e`), which the crate does not name; the version is pinned in
    // Cargo.toml.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const PAGE_MAX_RECLAIM: libmimalloc_sys::mi_option_t = 41;
    // SAFETY: mi_option_set only stores a number in mimalloc's option table (atomically); any
    // value is valid for these options.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(PAGE_MAX_RECLAIM, 0);
    }
}

fn main() {
    tune_allocator();
    // The runtime contracts come first: a runtime runs the binary under another name
    // (slirp4netns, pasta), with CNI's environment, or with netavark's plugin subcommands,
    // and none of them speaks netyard's own command line.
    if let Some(code) = netyard::front_door(std::env::args_os().collect()) {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    // Reached only behind global flags (`netyard --api P docker-plugin`): front_door runs it
    // otherwise. The plugin starts its own runtime, so it runs before ours.
    if let Command::DockerPlugin { args } = &cli.command {
        let mut args = args.clone();
        if let Some(api) = cli
            .api
            .as_ref()
            .filter(|_| !args.iter().any(|a| a == "--api"))
        {
            args.push("--api".into());
            args.push(api.into());
        }
        std::process::exit(netyard::plugins::docker::main(args));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETYARD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(match cli.command {
            Command::Daemon(_) => "info",
            _ => "warn",
        })
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if matches!(&cli.command, Command::Daemon(a) if a.log_format == LogFormat::Json) {
        // One flat object per line: the message and the event's fields at the top level,
        // no span context (the daemon logs from few spans), so Loki or jq read it as is.
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netyard: {}", one_line(&e));
            1
        }
    };
    std::process::exit(code);
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Daemon(DaemonArgs {
        threads: Some(n), ..
    }) = &cli.command
    {
        builder.worker_threads(usize::from(*n));
        netyard::runtime::lanes::set_threads(usize::from(*n));
    }
    let rt = builder
        // Blocking threads serve bursts (attaching, entering namespaces, teardown): one
        // idle for half a second exits, handing its allocator pages back (see
        // tune_allocator) instead of holding them for tokio's default 10 s.
        .thread_keep_alive(std::time::Duration::from_millis(500))
        .enable_all()
        .thread_name("netyard")
        .build()
        .context("starting the tokio runtime")?;
    let api = cli.api.clone().unwrap_or_else(default_api_path);
    rt.block_on(async move {
        let c = ApiClient::new(api.clone());
        let code = match cli.command {
            Command::Daemon(a) => {
                netyard::daemon::run(netyard::daemon::Options {
                    api,
                    config: a.config,
                    // The default is resolved here, where it is defined (the CLI crate), so
                    // the library never guesses a directory: an ephemeral daemon has none.
                    state_dir: if a.ephemeral {
                        None
                    } else {
                        Some(a.state_dir.unwrap_or_else(default_persistent_state_dir))
                    },
                    ephemeral: a.ephemeral,
                    dns_upstreams: a.dns_upstream,
                    dns_ttl: a.dns_ttl,
                    metrics_addr: a.metrics_addr,
                    etcd: netyard::cluster::ClusterOptions::from_flags(
                        a.etcd,
                        a.node,
                        a.underlay_ip,
                        a.etcd_lease_ttl,
                        a.etcd_prefix,
                    )?,
                })
                .await?;
                0
            }
            Command::Demo(a) => {
                netyard::demo::run(&a.kind).await?;
                0
            }
            Command::Network(n) => commands::network(&c, n).await?,
            Command::Attach(a) => commands::attach(&c, a).await?,
            Command::Detach { network, name } => commands::detach(&c, &network, &name).await?,
            Command::Inspect { name, network } => {
                commands::inspect(&c, &name, network.as_deref()).await?
            }
            Command::Rename {
                network,
                name,
                new_name,
            } => commands::rename(&c, &network, &name, &new_name).await?,
            Command::Publish {
                network,
                name,
                specs,
            } => commands::publish(&c, &network, &name, specs).await?,
            Command::Unpublish {
                network,
                name,
                spec,
            } => commands::unpublish(&c, &network, &name, &spec).await?,
            Command::Ps { json } => commands::ps(&c, json).await?,
            Command::Fdb(f) => match (f.command, f.network) {
                (
                    Some(FdbCommand::Add {
                        network,
                        mac,
                        remote,
                    }),
                    _,
                ) => commands::fdb_add(&c, &network, &mac, &remote).await?,
                (Some(FdbCommand::Del { network, mac }), _) => {
                    commands::fdb_del(&c, &network, &mac).await?
                }
                (None, Some(network)) => commands::fdb(&c, &network, f.json).await?,
                (None, None) => anyhow::bail!("fdb: give a network"),
            },
            Command::Flows { json } => commands::flows(&c, json).await?,
            Command::Link(l) => netyard_cli::link::run(&c, l).await?,
            Command::Router(r) => netyard_cli::router::run(&c, r).await?,
            Command::System(s) => commands::system(&c, s).await?,
            Command::Completions { shell } => {
                netyard_cli::manual::completions(shell, &mut std::io::stdout());
                0
            }
            Command::Man { dir } => {
                let pages = netyard_cli::manual::man_pages(&dir)
                    .with_context(|| format!("writing man pages into {}", dir.display()))?;
                for page in pages {
                    println!("{}", page.display());
                }
                0
            }
            Command::Stats { json } => commands::stats(&c, json).await?,
            Command::Top {
                once,
                json,
                interval,
            } => {
                let every = std::time::Duration::from_secs_f64(interval);
                if once {
                    netyard_cli::top::once(&c, every, json).await?
                } else {
                    netyard_cli::top::live(&c, every).await?
                }
            }
            Command::Run(a) => commands::run(&c, a).await?,
            // Dispatched in `main`, before this runtime started.
            Command::DockerPlugin { .. } => 2,
            Command::Capture {
                network,
                endpoint_arg,
                endpoint,
                count,
                duration,
                write,
            } => {
                let endpoint = endpoint.or(endpoint_arg);
                commands::capture(&c, &network, endpoint.as_deref(), count, duration, &write)
                    .await?
            }
            Command::Lab(cmd) => netyard_cli::lab::run(&c, cmd).await?,
            Command::Exec { node, cmd } => netyard_cli::exec::exec(&c, &node, &cmd).await?,
        };
        Ok(code)
    })
}
