//! iptables-legacy table stamps on the real kernel, in a throwaway network namespace: a
//! stamp stays the same while nothing changes and changes with a rule added by another
//! program, for IPv4 and IPv6; iptables-nft has none. Needs root and iptables-legacy;
//! under `CI=true` a missing requirement fails the test instead of skipping it.

mod support;

use kproxy_model::IpFamily;
use kproxy_node::kernel::xt_stamp::table_stamp;
use kproxy_node::kernel::{Backend, ExecIptables, IptablesTools, StampTool};
use std::process::Command;
use std::time::Duration;
use support::netns::Netns;

fn run(tool: &str, args: &[&str]) {
    let status = Command::new(tool).args(args).status().expect("tool runs");
    assert!(status.success(), "{tool} {args:?}");
}

#[test]
fn a_stamp_changes_with_the_rules_and_only_then() {
    let Some(_netns) = Netns::enter(&["iptables-legacy", "ip6tables-legacy"]) else {
        return;
    };
    for (family, tool, address) in [
        (IpFamily::V4, "iptables-legacy", "192.0.2.1"),
        (IpFamily::V6, "ip6tables-legacy", "2001:db8::1"),
    ] {
        run(tool, &["-t", "nat", "-S"]);
        let before = table_stamp(family, "nat").expect("stamp");
        assert_eq!(table_stamp(family, "nat").expect("stamp"), before);
        run(
            tool,
            &["-t", "nat", "-A", "OUTPUT", "-d", address, "-j", "RETURN"],
        );
        let added = table_stamp(family, "nat").expect("stamp");
        assert_ne!(added, before, "{family:?}: a new rule left the stamp alone");
        run(tool, &["-t", "nat", "-N", "KPROXY-STAMP-TEST"]);
        assert_ne!(table_stamp(family, "nat").expect("stamp"), added);
        run(tool, &["-t", "nat", "-X", "KPROXY-STAMP-TEST"]);
        run(
            tool,
            &["-t", "nat", "-D", "OUTPUT", "-d", address, "-j", "RETURN"],
        );
        assert_eq!(table_stamp(family, "nat").expect("stamp"), before);
        assert!(table_stamp(family, "no-such-table-name-that-is-too-long-here").is_err());
    }
    let tools = IptablesTools::find(IpFamily::V4, Backend::Nft).expect("iptables-nft");
    let mut nft = ExecIptables::new(tools, Duration::from_secs(10));
    assert_eq!(nft.table_stamp("nat").expect("no stamp"), None);
}
