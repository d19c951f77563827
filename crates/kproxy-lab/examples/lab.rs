//! Builds a lab, runs kproxy on it with a cluster file, and keeps it up for a while to look
//! around (`ip netns exec NAME ...`): `cargo run -p kproxy-lab --example lab -- CLUSTER.yaml
//! [SECONDS] [MODE]` (as root; KPROXY_BIN names the kproxy binary).

use kproxy_lab::{AgentBinary, AgentOptions, ClusterSource, Lab, LabSpec, ProxyMode};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cluster = args
        .next()
        .ok_or("usage: lab CLUSTER.yaml [SECONDS] [MODE]")?;
    let seconds: u64 = args.next().map_or(Ok(60), |s| s.parse())?;
    let mode = match args.next().as_deref() {
        None | Some("iptables-nft") => ProxyMode::IptablesNft,
        Some("iptables-legacy") => ProxyMode::IptablesLegacy,
        Some("nftables") => ProxyMode::Nftables,
        Some(other) => return Err(format!("unknown mode {other}").into()),
    };
    let lab = Lab::build(LabSpec::default())?;
    let file = lab.write_file("cluster.yaml", &std::fs::read_to_string(&cluster)?)?;
    let options = AgentOptions {
        mode,
        source: ClusterSource::File(file),
        extra_args: Vec::new(),
    };
    let mut agent = lab.start_agent(&AgentBinary::locate()?, &options)?;
    agent.wait_synced(Duration::from_secs(30))?;
    println!(
        "node {} outside {} client pod {}",
        lab.node.name(),
        lab.outside.name(),
        lab.client_pod.name()
    );
    for pod in &lab.pods {
        println!("pod {}", pod.name());
    }
    std::thread::sleep(Duration::from_secs(seconds));
    agent.stop()?;
    Ok(())
}
