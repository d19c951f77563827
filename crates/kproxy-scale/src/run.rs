//! One run: set up the namespaces and the fake API server, start the agent, time the first
//! sync, one endpoint change and one new service, then the kernel floor; print the report.

use crate::agent::AgentCommand;
use crate::args::{Backend, Mode, RunArgs};
use crate::cluster::{self, spare_pod_ip, ServiceSpec, Shape};
use crate::naming::{endpoint_chain, service_chain, ChainTable};
use crate::netns::NodeNetwork;
use crate::probe::{Kernel, TableCount};
use crate::relay::{self, read_log};
use crate::report::{median_step, Report, Step};
use crate::steps::{Mark, Session};
use crate::workdir::Workdir;
use crate::{floor, signals};
use kproxy_testapi::FakeApiServer;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest wait for one change to reach the kernel (or `--timeout`, if shorter).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause before each change, longer than the agent's default minimum sync period, so each
/// change meets an idle agent.
const QUIET: Duration = Duration::from_secs(2);
/// Longest whole-table dump after the first sync (or `--timeout`, if shorter).
const DUMP_TIMEOUT: Duration = Duration::from_secs(300);
/// kube-proxy's default metrics and healthz ports; the namespace is fresh, so they are free.
const METRICS: ([u8; 4], u16) = ([127, 0, 0, 1], 10249);
const HEALTHZ: ([u8; 4], u16) = ([127, 0, 0, 1], 10256);

/// Runs the harness and prints its report.
pub fn main(args: &RunArgs) -> Result<(), String> {
    let shape = Shape {
        services: args.services,
        endpoints: args.endpoints,
    }
    .validate()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces and iptables)".into());
    }
    let kproxy = agent_binary(args)?;
    signals::install();
    let prefix = format!("kproxy-scale-{}", std::process::id());
    let mut workdir = Workdir::create(&prefix)?;
    let network = NodeNetwork::create(&prefix)?;
    // Before any other thread exists, so the whole process lives in the node's namespace.
    network.node.enter()?;
    // iptables-legacy's lock is per host, not per namespace: a private one keeps the
    // seconds-long restores here from blocking iptables elsewhere on the machine (and
    // the reverse). Every tool started from now on (agent, floor, probes) inherits it.
    std::env::set_var("XTABLES_LOCKFILE", workdir.file("xtables.lock"));
    let report = measure(args, shape, &kproxy, &workdir, &network)?;
    if args.keep {
        eprintln!(
            "kproxy-scale: kept {} (agent.log, cluster.json, restores.log)",
            workdir.keep().display()
        );
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{report}");
    }
    Ok(())
}

fn agent_binary(args: &RunArgs) -> Result<PathBuf, String> {
    let path = match &args.kproxy {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("locating this program: {e}"))?
            .with_file_name("kproxy"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it (cargo build --release --bin kproxy) or pass --kproxy PATH",
            path.display()
        ))
    }
}

/// Everything inside the node's namespace.
fn measure(
    args: &RunArgs,
    shape: Shape,
    kproxy: &Path,
    workdir: &Workdir,
    network: &NodeNetwork,
) -> Result<Report, String> {
    let load_start = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let api = runtime
        .block_on(FakeApiServer::start())
        .map_err(|e| format!("fake API server: {e}"))?;
    let cluster_file = workdir.file("cluster.json");
    serve_cluster(&api, shape, &cluster_file)?;
    let kubeconfig = workdir.file("kubeconfig");
    api.write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let command = agent_command(args, kproxy, kubeconfig, workdir)?;
    let timeout = Duration::from_secs(args.timeout);
    let change_timeout = CHANGE_TIMEOUT.min(timeout);
    let start = Mark::before_start();
    let mut session = Session {
        agent: command.spawn()?,
        metrics: command.metrics,
        kernel: Kernel {
            backend: args.backend,
            table: ChainTable::of(args.mode),
        },
        restore_log: workdir.file("restores.log"),
    };
    let timed = time_steps(&mut session, &api, shape, &start, args.changes, timeout)?;
    let agent_usage = session.agent.usage();
    session.agent.stop();
    // A restore the agent started may outlive it; it must not run beside the floor.
    network.node.kill_leftovers();
    drop(runtime);
    let calls = read_log(&session.restore_log);
    let floor_netns = format!("{}-floor", network.prefix);
    let floor = match (args.no_floor, args.mode) {
        (true, _) => Err("--no-floor".into()),
        (false, Mode::Nftables) => floor::measure_nft(kproxy, &cluster_file, &floor_netns, timeout),
        (false, Mode::Iptables) => {
            let (backend, changes) = (args.backend, args.changes);
            floor::measure(
                kproxy,
                &cluster_file,
                backend,
                &floor_netns,
                changes,
                timeout,
            )
        }
    };
    Ok(Report {
        services: shape.services,
        endpoints: shape.endpoints,
        backend: args.backend,
        mode: args.mode,
        agent: kproxy.display().to_string(),
        load_average: [load_start, load_average()],
        timeout,
        change_timeout,
        first_sync: timed.first_sync,
        table: timed.table,
        endpoint_change: median_step(&timed.endpoint_changes),
        endpoint_changes: timed.endpoint_changes,
        new_service: timed.new_service,
        agent_usage,
        restore_calls: calls.len(),
        restore_bytes: calls.iter().map(|c| c.bytes).sum(),
        floor,
        notes: timed.notes,
    })
}

/// What the agent did while it ran.
struct TimedSteps {
    first_sync: Step,
    table: Result<TableCount, String>,
    endpoint_changes: Vec<Step>,
    new_service: Option<Step>,
    notes: Vec<String>,
}

/// Times the first sync (from `start`), counts the table, then times `changes` endpoint
/// changes and one new service.
fn time_steps(
    session: &mut Session,
    api: &FakeApiServer,
    shape: Shape,
    start: &Mark,
    changes: u32,
    timeout: Duration,
) -> Result<TimedSteps, String> {
    let table = session.kernel.table;
    let last = ServiceSpec::nth(shape.services - 1);
    let last_ip = last.pod_ips(shape.endpoints)[shape.endpoints as usize - 1];
    let chains = [
        service_chain(table, &last),
        endpoint_chain(table, &last, last_ip),
    ];
    let first_sync = session.wait_for(start, &chains, Instant::now() + timeout)?;
    if first_sync.to_kernel.is_none() {
        return Ok(TimedSteps {
            first_sync,
            table: Err("no first sync".into()),
            endpoint_changes: Vec::new(),
            new_service: None,
            notes: vec![format!(
                "first sync did not finish in {} s",
                timeout.as_secs()
            )],
        });
    }
    let count = session.kernel.count(DUMP_TIMEOUT.min(timeout));
    let change_timeout = CHANGE_TIMEOUT.min(timeout);
    let endpoint_changes = (0..changes)
        .map(|n| change_endpoint(session, api, shape, table, n, change_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let service = add_service(session, api, shape, table, change_timeout)?;
    Ok(TimedSteps {
        first_sync,
        table: count,
        endpoint_changes,
        new_service: Some(service),
        notes: Vec::new(),
    })
}

/// Loads the cluster into the fake API server and writes it as a List for `kproxy rules`.
fn serve_cluster(api: &FakeApiServer, shape: Shape, file: &Path) -> Result<(), String> {
    let write_error = |e: std::io::Error| format!("{}: {e}", file.display());
    let out = std::fs::File::create(file).map_err(write_error)?;
    let mut out = std::io::BufWriter::new(out);
    out.write_all(br#"{"apiVersion":"v1","kind":"List","items":["#)
        .map_err(write_error)?;
    for (i, object) in cluster::objects(shape).enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(write_error)?;
        }
        serde_json::to_writer(&mut out, &object).map_err(|e| e.to_string())?;
        api.apply_json(object).map_err(|e| e.to_string())?;
    }
    out.write_all(b"]}").map_err(write_error)?;
    out.flush().map_err(write_error)
}

fn agent_command(
    args: &RunArgs,
    kproxy: &Path,
    kubeconfig: PathBuf,
    workdir: &Workdir,
) -> Result<AgentCommand, String> {
    let (tool, relay_name) = match args.mode {
        Mode::Iptables => (
            format!("iptables-{}-restore", args.backend.name()),
            "iptables-restore",
        ),
        Mode::Nftables => ("nft".to_string(), "nft"),
    };
    let mut real = find_tool(&tool)?;
    if args.mode == Mode::Iptables
        && args.backend == Backend::Legacy
        && std::env::var("KPROXY_IPTABLES_WRITER").as_deref() != Ok("restore")
    {
        // The agent restores through its own x_tables writer on this backend; the relay
        // stands in for the writer, which then runs as the agent would run it.
        let writer = workdir.file("xtables-restore");
        write_script(&writer, &relay::writer_script(kproxy, &real))?;
        real = writer;
    }
    let harness = std::env::current_exe().map_err(|e| format!("locating this program: {e}"))?;
    let relay = workdir.file(relay_name);
    write_script(
        &relay,
        &relay::script(&harness, &workdir.file("restores.log"), &real),
    )?;
    Ok(AgentCommand {
        binary: kproxy.to_path_buf(),
        kubeconfig,
        backend: args.backend,
        mode: args.mode,
        metrics: SocketAddr::from(METRICS),
        healthz: SocketAddr::from(HEALTHZ),
        restore_relay: relay,
        restore_timeout: Duration::from_secs(args.timeout),
        log: workdir.file("agent.log"),
    })
}

fn write_script(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn find_tool(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file());
    found.ok_or(format!("{name} not found in PATH, /usr/sbin or /sbin"))
}

/// The `n`th endpoint change: replaces the first endpoint of the `n`th service from the
/// middle with the `n`th spare pod IP.
fn change_endpoint(
    session: &mut Session,
    api: &FakeApiServer,
    shape: Shape,
    table: ChainTable,
    n: u32,
    timeout: Duration,
) -> Result<Step, String> {
    std::thread::sleep(QUIET);
    let spec = ServiceSpec::nth((shape.services / 2 + n) % shape.services);
    let mut ips = spec.pod_ips(shape.endpoints);
    ips[0] = spare_pod_ip(n);
    let chain = endpoint_chain(table, &spec, ips[0]);
    let mark = session.mark();
    api.apply_json(spec.slice_json(&ips))
        .map_err(|e| e.to_string())?;
    session.wait_for(&mark, &[chain], Instant::now() + timeout)
}

/// Adds one service (the next index) with its endpoints.
fn add_service(
    session: &mut Session,
    api: &FakeApiServer,
    shape: Shape,
    table: ChainTable,
    timeout: Duration,
) -> Result<Step, String> {
    std::thread::sleep(QUIET);
    let spec = ServiceSpec::nth(shape.services);
    let ips = spec.pod_ips(shape.endpoints);
    let chains = [
        service_chain(table, &spec),
        endpoint_chain(table, &spec, ips[ips.len() - 1]),
    ];
    let mark = session.mark();
    api.apply_json(spec.service_json())
        .and_then(|_| api.apply_json(spec.slice_json(&ips)))
        .map_err(|e| e.to_string())?;
    session.wait_for(&mark, &chains, Instant::now() + timeout)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
