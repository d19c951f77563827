//! Wiring: configuration in, servers, kernel tools, source and sync loop started, until a
//! signal. The entry points the binary calls are [`run_agent`] and [`cleanup`].

use crate::cleanup::{cleanup_iptables, cleanup_nftables};
use crate::config::{AgentConfig, ConfigError, ModeName, NodePortAddresses, SourceChoice};
use crate::conntrack::{ConntrackTool, NetlinkConntrack};
use crate::flags::AgentArgs;
use crate::hcserver::ServiceHealthServers;
use crate::healthz::{health_handler, ProxierHealth};
use crate::http::{spawn_server, Handler, Reply};
use crate::iptables_mode::IptablesModeSettings;
use crate::ipvs_mode::cleanup_ipvs;
use crate::kernel::addresses::host_addresses;
use crate::kernel::backend::resolve_backend;
use crate::kernel::KernelError;
use crate::logging;
use crate::metrics::{Metrics, MetricsMode};
use crate::startup::start_mode;
use crate::sync_loop::{AgentEvent, LoopTiming, SharedState, SyncLoop};
use hyper::Method;
use kproxy_source::{
    ApiSourceConfig, FileSourceConfig, InitialSync, Source, SourceError, SourceEvent,
};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The flags or config file are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--proxy-mode ipvs` on a kernel without IPVS.
    #[error("--proxy-mode ipvs: the kernel has no IPVS (ip_vs module); load it with `modprobe ip_vs` or use another mode")]
    NoIpvs,
    /// No family can be programmed.
    #[error("no usable family: {0}")]
    NoFamily(String),
    /// A kernel tool failed during start-up.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The cluster source could not start.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A server address could not be bound.
    #[error("binding the {what} server to {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `--cleanup` could not remove everything.
    #[error("cleanup: {0}")]
    Cleanup(String),
}

/// Runs the node agent with kube-proxy's flags until SIGTERM or SIGINT. With `--cleanup`
/// it removes the installed rules and returns instead. This is the `kproxy` executable's
/// entry point: on the legacy backend the agent runs that executable's `xtables-restore`
/// as its restore tool, unless `KPROXY_IPTABLES_WRITER=restore`.
pub fn run_agent(args: AgentArgs) -> Result<(), AgentError> {
    if args.cleanup_requested() {
        return cleanup(args);
    }
    let (mut config, warnings) = AgentConfig::load(&args)?;
    if std::env::var("KPROXY_IPTABLES_WRITER").as_deref() != Ok("restore") {
        config.legacy_writer = std::env::current_exe().ok();
    }
    logging::set_verbosity(config.verbosity);
    warnings.iter().for_each(logging::warn);
    crate::allocator::tune_allocator();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    runtime.block_on(serve(config, shutdown_signal()))
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    logging::info(0, "signal received, stopping");
}

/// Runs the agent with a resolved configuration until `shutdown` resolves. Must be called
/// on a multi-threaded tokio runtime.
pub async fn serve(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let shared = SharedState {
        health: Arc::new(ProxierHealth::new(loop_timing(&config).sync_period * 2)),
        metrics: Arc::new(Metrics::for_mode(metrics_mode(config.mode))),
    };
    let mut servers = Vec::new();
    if let Some(addr) = config.healthz_bind_address {
        let handler = health_handler(Arc::clone(&shared.health), Arc::clone(&shared.metrics));
        servers.push(start_server("healthz", addr, handler).await?);
    }
    if let Some(addr) = config.metrics_bind_address {
        servers.push(
            start_server(
                "metrics",
                addr,
                metrics_handler(Arc::clone(&shared.metrics)),
            )
            .await?,
        );
    }
    let result = run_with_servers(&config, shared, shutdown).await;
    servers.iter().for_each(tokio::task::JoinHandle::abort);
    result
}

async fn run_with_servers(
    config: &AgentConfig,
    shared: SharedState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let addresses = host_addresses().unwrap_or_else(|e| {
        logging::warn(format!(
            "reading interface addresses: {e}; --nodeport-addresses CIDRs match nothing"
        ));
        Vec::new()
    });
    let settings = IptablesModeSettings::from_config(config, addresses.clone());
    let mode = tokio::task::block_in_place(|| start_mode(config, settings))?;
    let mode_name = mode.name();
    let health_checks = ServiceHealthServers::new(
        health_check_addresses(&config.node_port_addresses, &addresses),
        Arc::clone(&shared.health),
    );
    let conntrack = match NetlinkConntrack::open() {
        Ok(tool) => Some(Box::new(tool) as Box<dyn ConntrackTool>),
        Err(e) => {
            logging::warn(format!(
                "{e}: stale UDP conntrack entries will not be cleared"
            ));
            None
        }
    };
    let timing = loop_timing(config);
    let sync_loop = SyncLoop::new(
        &config.node_name,
        mode,
        timing,
        shared,
        health_checks,
        conntrack,
    );
    let source = source_for(config).start().await?;
    let (sender, events) = mpsc::channel(256);
    let forwarder = tokio::spawn(forward_source(source, sender));
    logging::info(
        0,
        format!(
            "kproxy node agent running as node {:?} ({mode_name} mode)",
            config.node_name
        ),
    );
    sync_loop.run(events, shutdown).await;
    forwarder.abort();
    Ok(())
}

/// The sync periods of the configured mode (`--ipvs-*` in ipvs mode).
fn loop_timing(config: &AgentConfig) -> LoopTiming {
    match config.mode {
        ModeName::Ipvs => LoopTiming {
            min_sync_period: config.ipvs.min_sync_period,
            sync_period: config.ipvs.sync_period,
        },
        _ => LoopTiming {
            min_sync_period: config.min_sync_period,
            sync_period: config.sync_period,
        },
    }
}

fn metrics_mode(mode: ModeName) -> MetricsMode {
    match mode {
        ModeName::Iptables => MetricsMode::Iptables,
        ModeName::Nftables => MetricsMode::Nftables,
        ModeName::Ipvs => MetricsMode::Ipvs,
    }
}

async fn start_server(
    what: &'static str,
    addr: SocketAddr,
    handler: Handler,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Bind { what, addr, source })?;
    Ok(spawn_server(listener, handler))
}

/// The `/metrics` handler.
pub fn metrics_handler(metrics: Arc<Metrics>) -> Handler {
    Arc::new(move |method: &Method, path: &str| {
        if path != "/metrics" {
            return Reply::not_found();
        }
        if method != Method::GET {
            return Reply::method_not_allowed();
        }
        Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        )
    })
}

fn health_check_addresses(node_ports: &NodePortAddresses, host: &[IpAddr]) -> Option<Vec<IpAddr>> {
    match node_ports {
        NodePortAddresses::Cidrs(cidrs) if !cidrs.iter().any(|c| c.prefix_len() == 0) => Some(
            host.iter()
                .copied()
                .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
                .collect(),
        ),
        _ => None,
    }
}

fn source_for(config: &AgentConfig) -> Source {
    match &config.source {
        SourceChoice::ClusterFile(path) => Source::File(FileSourceConfig::new(path.clone())),
        SourceChoice::Api { kubeconfig, master } => Source::Api(ApiSourceConfig {
            kubeconfig: kubeconfig.clone(),
            master: master.clone(),
            node_name: config.node_name.clone(),
            ..ApiSourceConfig::default()
        }),
    }
}

/// Passes source events to the loop, logging warnings and announcing the end of the
/// initial lists.
async fn forward_source(
    mut source: kproxy_source::RunningSource,
    sender: mpsc::Sender<AgentEvent>,
) {
    let mut initial = InitialSync::new();
    while let Some(event) = source.recv().await {
        let complete = initial.observe(&event);
        let forwarded = match event {
            SourceEvent::Store(event) => Some(AgentEvent::Store(event)),
            SourceEvent::Warning(warning) => {
                logging::warn(warning.to_string());
                None
            }
            SourceEvent::Synced(_) => None,
        };
        if let Some(event) = forwarded {
            if sender.send(event).await.is_err() {
                return;
            }
        }
        if complete && sender.send(AgentEvent::InitialSyncDone).await.is_err() {
            return;
        }
    }
    logging::warn("the cluster source stopped; rules stay as they are");
}

/// Removes everything any mode of kube-proxy or kproxy installed: the ipvs mode's state
/// (when the kernel has IPVS), the iptables mode's chains (both families, both backends)
/// and the `kube-proxy` nftables tables.
pub fn cleanup(args: AgentArgs) -> Result<(), AgentError> {
    logging::set_verbosity(args.verbosity.unwrap_or(0));
    let backend = resolve_backend(crate::config::BackendChoice::Auto);
    let errors: Vec<String> = [
        cleanup_ipvs(backend),
        cleanup_iptables(),
        cleanup_nftables(),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Cleanup(errors.join("; ")))
    }
}
