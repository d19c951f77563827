//! kproxy killed with SIGKILL in the middle of a sync (its `iptables-restore` held up by a
//! wrapper so the kill lands inside it), then started again, while clients keep opening
//! connections through the node and long-lived connections stay open: the established
//! connections keep working, and new connections fail for no longer than the restart
//! (in practice not at all: the kernel keeps the rules). Prints (`MEASURED`) the restart's
//! length, the connections made and failed, and the established connections that survived.

mod fault_support;

use fault_support::{base_args, prerequisites, replace_file, report, write_script, AgentProcess};
use kproxy_lab::{tcp_probe, Lab, LabSpec, Netns, Outcome, Probe};
use kproxy_node::kernel::exec::find_tool;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST: &str = "sigkill_during_sync";
/// The echo server's port in pod-0 (the lab's own servers close after one line).
const ECHO_PORT: u16 = 9090;

fn cluster(web_endpoints: &[&str]) -> String {
    let endpoints: String = web_endpoints
        .iter()
        .map(|ip| {
            format!("- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: node-0}}\n")
        })
        .collect();
    format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: node-0}}
status: {{addresses: [{{type: InternalIP, address: 192.168.50.10}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: e2e}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{{name: p, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v4, namespace: e2e, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: p, port: 8080, protocol: TCP}}]
endpoints:
{endpoints}---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: e2e}}
spec:
  clusterIP: 10.96.0.12
  ports: [{{name: p, port: 9000, protocol: TCP, targetPort: {ECHO_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v4, namespace: e2e, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: p, port: {ECHO_PORT}, protocol: TCP}}]
endpoints:
- {{addresses: ["10.244.0.2"], conditions: {{ready: true}}, nodeName: node-0}}
"#
    )
}

/// A line-echo server in a pod namespace; stops with the flag.
fn start_echo(pod: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let listener = pod
        .enter(|| TcpListener::bind(("0.0.0.0", ECHO_PORT)))
        .expect("enter pod")
        .expect("bind echo");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    std::thread::spawn(move || echo_lines(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

fn echo_lines(stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if writeln!(writer, "{line}").is_err() {
            return;
        }
    }
}

/// A connection opened from `from` to the echo service, kept open.
struct Established {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Established {
    fn open(from: &Netns, target: SocketAddr) -> Established {
        let stream = from
            .enter(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)))
            .expect("enter")
            .expect("connect to echo");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        Established {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn echoes(&mut self, word: &str) -> bool {
        if writeln!(self.writer, "{word}").is_err() {
            return false;
        }
        let mut line = String::new();
        self.reader.read_line(&mut line).is_ok() && line.trim() == word
    }
}

fn restore_wrapper(dir: &Path, real: &Path) -> String {
    format!(
        "#!/bin/sh\n# Slows iptables-restore down while DIR/slow exists (kproxy-node faults_crash).\n\
         if [ -e '{dir}/slow' ]; then touch '{dir}/in-restore'; sleep 2; fi\nexec '{real}' \"$@\"\n",
        dir = dir.display(),
        real = real.display()
    )
}

#[test]
fn sigkill_during_a_sync_keeps_connections_and_the_restart_loses_none() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let lab = Lab::build(LabSpec { pods: 3 }).expect("lab");
    let stop_echo = Arc::new(AtomicBool::new(false));
    let echo = start_echo(&lab.pods[0], Arc::clone(&stop_echo));
    let dir = lab.work_dir().to_path_buf();
    let script = dir.join("iptables-restore");
    let real = find_tool("iptables-nft-restore").expect("iptables-nft-restore");
    write_script(&script, &restore_wrapper(&dir, &real));
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, cluster(&["10.244.0.2", "10.244.0.3"])).expect("cluster");
    let mut args = base_args(
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        "30s",
    );
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let env = [("KPROXY_IPTABLES_RESTORE", script.to_str().expect("utf-8"))];
    let start = |n: u32| {
        let mut agent = AgentProcess::start(
            &binary,
            &lab.node,
            &[],
            &args,
            &env,
            &dir.join(format!("agent-{n}.log")),
        );
        agent.wait_until("a successful sync", Duration::from_secs(30), |a| {
            a.metric("kubeproxy_sync_proxy_rules_last_timestamp_seconds")
                .is_some_and(|t| t > 0.0)
        });
        agent
    };
    let mut agent = start(0);

    let echo_ip: SocketAddr = "10.96.0.12:9000".parse().expect("addr");
    let mut established: Vec<Established> = [&lab.outside, &lab.client_pod, &lab.outside]
        .into_iter()
        .map(|from| Established::open(from, echo_ip))
        .collect();
    assert!(established.iter_mut().all(|c| c.echoes("before")));

    let targets: Vec<SocketAddr> = ["10.96.0.10:80", "192.168.50.10:30080"]
        .iter()
        .map(|t| t.parse().expect("addr"))
        .collect();
    let stop = AtomicBool::new(false);
    let epoch = Instant::now();
    let (records, timeline) = std::thread::scope(|scope| {
        let clients: Vec<_> = [&lab.outside, &lab.client_pod]
            .into_iter()
            .map(|from| {
                let (targets, stop) = (&targets, &stop);
                scope.spawn(move || keep_connecting(from, targets, stop, epoch))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let timeline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::fs::write(dir.join("slow"), "").expect("slow");
            replace_file(&file, &cluster(&["10.244.0.2", "10.244.0.3", "10.244.0.4"]));
            agent.wait_until("a restore in progress", Duration::from_secs(10), |_| {
                dir.join("in-restore").exists()
            });
            let killed = epoch.elapsed();
            agent.kill();
            let _ = std::fs::remove_file(dir.join("slow"));
            let restarted = start(1);
            let ready = epoch.elapsed();
            std::thread::sleep(Duration::from_millis(500));
            (killed, ready, restarted)
        }));
        stop.store(true, Ordering::Relaxed);
        let records: Vec<Record> = clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect();
        (records, timeline)
    });
    let (killed, ready, agent) = timeline.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let survived = established
        .iter_mut()
        .map(|c| c.echoes("after"))
        .filter(|ok| *ok)
        .count();
    stop_echo.store(true, Ordering::Relaxed);
    let _ = echo.join();

    let landed: usize = records.iter().map(|r| r.landed).sum();
    let failures: Vec<&(Duration, String)> = records.iter().flat_map(|r| &r.failures).collect();
    let restart = ready - killed;
    let times = failures.iter().map(|(at, _)| *at);
    let window = match (times.clone().min(), times.max()) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    assert_eq!(survived, established.len(), "established connections broke");
    assert!(
        failures
            .iter()
            .all(|(at, _)| *at >= killed && *at <= ready + Duration::from_secs(2)),
        "connections failed outside the restart: {failures:?}"
    );
    assert!(
        window <= restart,
        "failures for {window:?}, restart took {restart:?}"
    );
    assert!(landed >= 50, "only {landed} connections were made");
    let rules = lab
        .node
        .exec("iptables-nft-save", &["-t", "nat"])
        .expect("save");
    assert!(
        rules.contains("10.244.0.4:8080"),
        "the change was not programmed"
    );
    drop(agent);
    report(
        TEST,
        format!(
            "SIGKILL inside iptables-restore, restart to first sync took {restart:.2?}; \
             {landed} new connections, {} failed (over {window:.2?}); {survived}/{} \
             established connections still echo",
            failures.len(),
            established.len()
        ),
    );
}

/// What one client saw: connections that landed, and failures with when they happened.
#[derive(Default)]
struct Record {
    landed: usize,
    failures: Vec<(Duration, String)>,
}

fn keep_connecting(
    from: &Netns,
    targets: &[SocketAddr],
    stop: &AtomicBool,
    epoch: Instant,
) -> Record {
    let mut record = Record::default();
    while !stop.load(Ordering::Relaxed) {
        for &target in targets {
            match tcp_probe(from, Probe::to(target)) {
                Ok(Outcome::Landed(_)) => record.landed += 1,
                Ok(other) => record
                    .failures
                    .push((epoch.elapsed(), format!("{target}: {other}"))),
                Err(e) => record
                    .failures
                    .push((epoch.elapsed(), format!("{target}: {e}"))),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    record
}
