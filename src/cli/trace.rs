//! `kproxy trace`: walk a packet through a ruleset (dumped or live, kproxy's or upstream
//! kube-proxy's) and print the chain path, or draw a service's chains.

use clap::{Args, ValueEnum};
use kproxy_trace::{service_graph_dot, DualStackRuleset, Packet, Ruleset, Tracer};
use std::net::IpAddr;
use std::path::PathBuf;

/// How to print the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// The walk as an indented tree (same as `tree`).
    Text,
    /// The walk as an indented tree.
    Tree,
    /// The service's chains as a Graphviz graph (needs `--service`).
    Dot,
}

/// Arguments of `kproxy trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// A ruleset file: `iptables-save` output (optionally followed by `ip6tables-save`
    /// after a `# ---- ip6tables` line) or iptables-restore input.
    #[arg(long, conflicts_with = "live", required_unless_present = "live")]
    pub rules: Option<PathBuf>,
    /// Read the ruleset of the current network namespace (needs root).
    #[arg(long)]
    pub live: bool,
    /// The node's own addresses (for `addrtype LOCAL`), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub local_ips: Vec<IpAddr>,
    /// Source address of the packet.
    #[arg(long, required_unless_present = "service")]
    pub src: Option<IpAddr>,
    /// Destination address of the packet.
    #[arg(long, required_unless_present = "service")]
    pub dst: Option<IpAddr>,
    /// Destination port.
    #[arg(long, required_unless_present = "service")]
    pub dport: Option<u16>,
    /// Protocol: tcp, udp or sctp.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Print JSON (`output` as upstream's test tracer writes it, `masq`, and the path).
    #[arg(long)]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TraceFormat,
    /// With `--format dot`: the service to draw, `NS/NAME` or `NS/NAME:PORT`.
    #[arg(long)]
    pub service: Option<String>,
}

/// Runs the trace and returns what to print.
pub fn run(args: &TraceArgs) -> Result<String, String> {
    let ipv6 = args.dst.is_some_and(|d| d.is_ipv6());
    let ruleset = load(args, ipv6)?;
    let out = render(args, &ruleset);
    // The process exits right after printing: freeing a large ruleset rule by rule would
    // take longer than the trace itself (about 20 ms for 400,000 rules).
    std::mem::forget(ruleset);
    out
}

/// The trace (or the service graph) of `ruleset` as `args` ask for it.
fn render(args: &TraceArgs, ruleset: &Ruleset) -> Result<String, String> {
    if args.format == TraceFormat::Dot {
        let service = args
            .service
            .as_deref()
            .ok_or("--format dot needs --service NS/NAME[:PORT]")?;
        return Ok(service_graph_dot(ruleset, service));
    }
    let (Some(src), Some(dst), Some(dport)) = (args.src, args.dst, args.dport) else {
        return Err("a trace needs --src, --dst and --dport".into());
    };
    let protocol = args
        .protocol
        .parse()
        .map_err(|e| format!("--protocol: {e}"))?;
    let tracer = Tracer::new(ruleset, &args.local_ips);
    let trace = tracer.trace(&Packet::new(src, dst, protocol, dport));
    let mut out = String::new();
    if args.json {
        let json = serde_json::to_string_pretty(&trace.to_json()).map_err(|e| e.to_string())?;
        out.push_str(&json);
        out.push('\n');
    } else {
        if args.local_ips.is_empty() {
            out.push_str("note: no --local-ips given; only loopback counts as a local address\n");
        }
        for rule in &ruleset.unknown_rules() {
            out.push_str(&format!(
                "note: line {}: not understood: {}\n",
                rule.line,
                rule.parts.join(", ")
            ));
        }
        out.push_str(&trace.render_tree());
    }
    Ok(out)
}

fn load(args: &TraceArgs, ipv6: bool) -> Result<Ruleset, String> {
    if args.live {
        return kproxy_trace::live::read_live_ruleset(ipv6).map_err(|e| e.to_string());
    }
    let path = args.rules.as_ref().ok_or("give --rules FILE or --live")?;
    let parsed =
        DualStackRuleset::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(if ipv6 { parsed.ipv6 } else { parsed.ipv4 })
}
