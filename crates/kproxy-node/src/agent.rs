//! Wiring: configuration in, servers, kernel tools, source and sync loop started, until a
//! signal. The entry points the binary calls are [`run_agent`] and [`cleanup`].

use crate::config::{AgentConfig, ConfigError, ModeName, NodePortAddresses, SourceChoice};
use crate::conntrack::{ConntrackCli, ConntrackTool};
use crate::flags::AgentArgs;
use crate::hcserver::ServiceHealthServers;
use crate::healthz::{health_handler, ProxierHealth};
use crate::http::{spawn_server, Handler, Reply};
use crate::iptables_mode::{IptablesFamilyKernel, IptablesMode, IptablesModeSettings};
use crate::kernel::addresses::host_addresses;
use crate::kernel::backend::resolve_backend;
use crate::kernel::sysctl::{
    apply_conntrack, bridge_warning, ensure_param, ProcSys, ROUTE_LOCALNET,
};
use crate::kernel::{Backend, ExecIptables, IptablesTools, KernelError, SaveTool};
use crate::logging;
use crate::metrics::Metrics;
use crate::sync_loop::{AgentEvent, LoopTiming, SharedState, SyncLoop};
use hyper::Method;
use kproxy_model::IpFamily;
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
    /// The proxy mode is not part of this build yet.
    #[error("--proxy-mode {0}: not available yet in this build (use iptables)")]
    ModeUnavailable(&'static str),
    /// No family can be programmed.
    #[error("no usable iptables: {0}")]
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
/// it removes the installed rules and returns instead.
pub fn run_agent(args: AgentArgs) -> Result<(), AgentError> {
    if args.cleanup_requested() {
        return cleanup(args);
    }
    let (config, warnings) = AgentConfig::load(&args)?;
    logging::set_verbosity(config.verbosity);
    warnings.iter().for_each(logging::warn);
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
    if config.mode != ModeName::Iptables {
        let name = if config.mode == ModeName::Ipvs {
            "ipvs"
        } else {
            "nftables"
        };
        return Err(AgentError::ModeUnavailable(name));
    }
    let shared = SharedState {
        health: Arc::new(ProxierHealth::new(config.sync_period * 2)),
        metrics: Arc::new(Metrics::new()),
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
    let kernels = tokio::task::block_in_place(|| family_kernels(config))?;
    tokio::task::block_in_place(|| prepare_kernel(config, &settings, &kernels));
    let mode = tokio::task::block_in_place(|| IptablesMode::new(settings, kernels, None))?;
    let health_checks = ServiceHealthServers::new(
        health_check_addresses(&config.node_port_addresses, &addresses),
        Arc::clone(&shared.health),
    );
    let conntrack = ConntrackCli::find().map(|c| Box::new(c) as Box<dyn ConntrackTool>);
    if conntrack.is_none() {
        logging::warn("conntrack tool not found: stale UDP conntrack entries will not be cleared");
    }
    let timing = LoopTiming {
        min_sync_period: config.min_sync_period,
        sync_period: config.sync_period,
    };
    let sync_loop = SyncLoop::new(
        &config.node_name,
        Box::new(mode),
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
            "kproxy node agent running as node {:?} (iptables mode)",
            config.node_name
        ),
    );
    sync_loop.run(events, shutdown).await;
    forwarder.abort();
    Ok(())
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

/// The iptables tools of each family that works; a family whose tools are missing or
/// broken is skipped with a loud warning.
fn family_kernels(config: &AgentConfig) -> Result<Vec<IptablesFamilyKernel>, AgentError> {
    let backend = resolve_backend(config.iptables_backend);
    logging::info(0, format!("iptables backend: {}", backend.name()));
    let mut kernels = Vec::new();
    let mut problems = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        match usable_family(family, backend, config) {
            Ok(kernel) => kernels.push(kernel),
            Err(e) => {
                logging::warn(format!("!!! {family:?} is NOT proxied on this node: {e}"));
                problems.push(format!("{family:?}: {e}"));
            }
        }
    }
    if kernels.is_empty() {
        return Err(AgentError::NoFamily(problems.join("; ")));
    }
    Ok(kernels)
}

fn usable_family(
    family: IpFamily,
    backend: Backend,
    config: &AgentConfig,
) -> Result<IptablesFamilyKernel, KernelError> {
    let mut exec = ExecIptables::new(
        IptablesTools::find(family, backend)?,
        config.restore_timeout,
    );
    let version = exec.version()?;
    exec.save_table("nat")?;
    Ok(IptablesFamilyKernel {
        family,
        random_fully: supports_random_fully(&version),
        kernel: Box::new(exec),
    })
}

/// Whether an `iptables --version` line is 1.6.2 or later.
pub fn supports_random_fully(version: &str) -> bool {
    let numbers: Vec<u32> = version
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    numbers >= vec![1, 6, 2]
}

/// Sysctls: `route_localnet` for localhost NodePorts, conntrack settings; a warning about
/// `bridge-nf-call-iptables`.
fn prepare_kernel(
    config: &AgentConfig,
    settings: &IptablesModeSettings,
    kernels: &[IptablesFamilyKernel],
) {
    let mut params = ProcSys;
    let ipv4 = kernels.iter().any(|k| k.family == IpFamily::V4);
    if ipv4 && settings.localhost_node_ports_active(None) {
        if let Some(warning) = ensure_param(&mut params, ROUTE_LOCALNET, "1") {
            logging::warn(warning);
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    for warning in apply_conntrack(&mut params, &config.conntrack, cpus) {
        logging::warn(warning);
    }
    if let Some(warning) = bridge_warning(&params) {
        logging::warn(warning);
    }
}

/// Removes everything kube-proxy's and kproxy's iptables mode installed, for both
/// families and both backends where their tools exist.
pub fn cleanup(args: AgentArgs) -> Result<(), AgentError> {
    logging::set_verbosity(args.verbosity.unwrap_or(0));
    let mut errors = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        for family in [IpFamily::V4, IpFamily::V6] {
            let Ok(tools) = IptablesTools::find(family, backend) else {
                continue;
            };
            if backend == Backend::Legacy && !legacy_tables_loaded(family) {
                continue;
            }
            let mut exec = ExecIptables::new(tools, std::time::Duration::from_secs(60));
            match crate::cleanup::cleanup_tables(&mut exec) {
                Ok(tables) if !tables.is_empty() => logging::info(
                    0,
                    format!(
                        "cleanup: {family:?} {}: cleaned {}",
                        backend.name(),
                        tables.join(", ")
                    ),
                ),
                Ok(_) => {}
                Err(e) => errors.push(format!("{family:?} {}: {e}", backend.name())),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Cleanup(errors.join("; ")))
    }
}

/// Whether x_tables has any table of this family loaded in this thread's network
/// namespace (reading a legacy table would otherwise load the modules and create it).
fn legacy_tables_loaded(family: IpFamily) -> bool {
    let path = match family {
        IpFamily::V4 => "/proc/thread-self/net/ip_tables_names",
        IpFamily::V6 => "/proc/thread-self/net/ip6_tables_names",
    };
    std::fs::read_to_string(path).is_ok_and(|names| !names.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fully_from_the_version() {
        assert!(supports_random_fully("iptables v1.8.9 (nf_tables)"));
        assert!(supports_random_fully("ip6tables v1.6.2"));
        assert!(!supports_random_fully("iptables v1.6.1"));
        assert!(!supports_random_fully("garbage"));
    }
}
