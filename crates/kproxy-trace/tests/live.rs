//! `live::read_live_ruleset` against a real kernel. Ignored by default: it must run as
//! root inside a throwaway network namespace that holds a `KPROXY-TRACE-TEST` chain, e.g.
//!
//! ```text
//! ip netns add kproxy-trace-test-$$
//! printf '*nat\n:KPROXY-TRACE-TEST - [0:0]\n-A KPROXY-TRACE-TEST -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.1:8080\nCOMMIT\n' \
//!   | ip netns exec kproxy-trace-test-$$ iptables-restore
//! ip netns exec kproxy-trace-test-$$ <this test binary> --ignored
//! ip netns delete kproxy-trace-test-$$
//! ```

use kproxy_trace::live::read_live_ruleset;
use kproxy_trace::{TableKind, Target};

#[test]
#[ignore = "needs root and a prepared network namespace"]
fn reads_the_namespace_ruleset() {
    let rules = read_live_ruleset(false).unwrap();
    let chain = rules.chain(TableKind::Nat, "KPROXY-TRACE-TEST").unwrap();
    assert_eq!(
        chain.rules[0].target,
        Target::Dnat {
            to: "10.1.0.1:8080".into()
        }
    );
    assert!(rules.unknown_rules().is_empty());
    read_live_ruleset(true).unwrap();
}
