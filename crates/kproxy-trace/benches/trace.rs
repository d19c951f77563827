//! Parsing and tracing through a synthetic kube-proxy ruleset of 10,000 services
//! (10 endpoints each, every 10th a NodePort, every other one with session affinity).

use criterion::{criterion_group, criterion_main, Criterion};
use kproxy_trace::{DualStackRuleset, Packet, Protocol, Ruleset, Tracer};
use std::fmt::Write;
use std::hint::black_box;
use std::net::IpAddr;

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;

fn cluster_ip(svc: usize) -> String {
    format!("172.30.{}.{}", svc / 250, svc % 250 + 1)
}

fn endpoint(svc: usize, ep: usize) -> String {
    format!("10.{}.{}.{}", svc / 250 + 1, svc % 250, ep + 1)
}

/// A ruleset shaped like kube-proxy's restore text (without built-in jumps).
fn synthetic_ruleset() -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    for name in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(chains, ":{name} - [0:0]");
    }
    rules.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    rules.push_str("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n");
    rules.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n");
    rules.push_str("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    for svc in 0..SERVICES {
        service(svc, &mut chains, &mut rules);
    }
    rules.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    format!("*nat\n{chains}{rules}COMMIT\n")
}

fn service(svc: usize, chains: &mut String, rules: &mut String) {
    let name = format!("ns{}/svc{svc}:p80", svc % 50);
    let ip = cluster_ip(svc);
    let svc_chain = format!("KUBE-SVC-{svc:016}");
    let affinity = svc.is_multiple_of(2);
    let _ = writeln!(chains, ":{svc_chain} - [0:0]");
    let _ = writeln!(rules, "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {ip} --dport 80 -j {svc_chain}");
    let _ = writeln!(rules, "-A {svc_chain} -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {ip} --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ");
    if svc.is_multiple_of(10) {
        let ext = format!("KUBE-EXT-{svc:016}");
        let _ = writeln!(chains, ":{ext} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-NODEPORTS -m comment --comment {name} -m tcp -p tcp --dport {} -j {ext}",
            30000 + svc / 10
        );
        let _ = writeln!(rules, "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ");
        let _ = writeln!(rules, "-A {ext} -j {svc_chain}");
    }
    let seps: Vec<String> = (0..ENDPOINTS)
        .map(|ep| format!("KUBE-SEP-{svc:012}{ep:04}"))
        .collect();
    if affinity {
        for (ep, sep) in seps.iter().enumerate() {
            let _ = writeln!(rules, "-A {svc_chain} -m comment --comment \"{name} -> {}:80\" -m recent --name {sep} --rcheck --seconds 10800 --reap -j {sep}", endpoint(svc, ep));
        }
    }
    for (ep, sep) in seps.iter().enumerate() {
        let left = ENDPOINTS - ep;
        let statistic = if left > 1 {
            format!(
                " -m statistic --mode random --probability {:.10}",
                1.0 / left as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            rules,
            "-A {svc_chain} -m comment --comment \"{name} -> {}:80\"{statistic} -j {sep}",
            endpoint(svc, ep)
        );
        let _ = writeln!(chains, ":{sep} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {sep} -m comment --comment {name} -s {} -j KUBE-MARK-MASQ",
            endpoint(svc, ep)
        );
        let recent = if affinity {
            format!(" -m recent --name {sep} --set")
        } else {
            String::new()
        };
        let _ = writeln!(rules, "-A {sep} -m comment --comment {name}{recent} -m tcp -p tcp -j DNAT --to-destination {}:80", endpoint(svc, ep));
    }
}

fn bench(c: &mut Criterion) {
    let text = synthetic_ruleset();
    let local: Vec<IpAddr> = vec!["192.168.0.2".parse().unwrap()];
    let last = SERVICES - 1;
    let packet = Packet::new(
        "10.0.0.2".parse().unwrap(),
        cluster_ip(last).parse().unwrap(),
        Protocol::Tcp,
        80,
    );
    let rules = Ruleset::parse(&text).unwrap();
    eprintln!(
        "synthetic ruleset: {} rules, {} bytes",
        rules.rule_count(),
        text.len()
    );
    let mut group = c.benchmark_group("10k-services");
    group.sample_size(10);
    group.bench_function("parse", |b| {
        b.iter(|| Ruleset::parse(black_box(&text)).unwrap())
    });
    group.bench_function("trace-last-service", |b| {
        let tracer = Tracer::new(&rules, &local);
        b.iter(|| tracer.trace(black_box(&packet)))
    });
    group.bench_function("parse-and-trace", |b| {
        b.iter(|| {
            let rules = Ruleset::parse(black_box(&text)).unwrap();
            let trace = Tracer::new(&rules, &local).trace(&packet);
            assert_eq!(trace.branches.len(), ENDPOINTS);
            trace
        })
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    group.bench_function("read-file-and-trace", |b| {
        b.iter(|| {
            let rules = DualStackRuleset::read_file(black_box(file.path())).unwrap();
            let trace = Tracer::new(&rules.ipv4, &local).trace(&packet);
            assert_eq!(trace.branches.len(), ENDPOINTS);
            trace
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
