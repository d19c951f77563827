//! Before a full sync: the canary chains, the kube chains the jump rules point at, and the
//! jump rules at the top of the built-in chains. Each tool run costs a process (about
//! 15 ms), so a chain is created once per pass, a jump into a chain that was just created
//! is known to be missing without asking, and the missing jumps go in with one restore.

use crate::iptables_mode::{CANARY_CHAIN, CANARY_TABLES};
use crate::kernel::{IptablesKernel, KernelError};
use kproxy_iptables::{is_builtin_chain, is_verdict, jump_rules, IptablesSettings, JumpRule};
use std::collections::BTreeSet;

/// Makes sure the canary chains, the chains the jumps use and the jump rules exist.
pub fn ensure_jumps(
    kernel: &mut dyn IptablesKernel,
    settings: &IptablesSettings,
) -> Result<(), KernelError> {
    for table in CANARY_TABLES {
        kernel.ensure_chain(table, CANARY_CHAIN)?;
    }
    let jumps = jump_rules(settings.family, settings.localhost_node_ports);
    let mut ensured = BTreeSet::new();
    let mut created = BTreeSet::new();
    let mut missing = Vec::new();
    // Inserted at the top one after the other, the last first, they end up in order.
    for jump in jumps.iter().rev() {
        let mut fresh = false;
        for chain in [jump.chain, jump.target] {
            if is_builtin_chain(chain) || is_verdict(chain) {
                continue;
            }
            if ensured.insert((jump.table, chain)) && kernel.ensure_chain(jump.table, chain)? {
                created.insert((jump.table, chain));
            }
            fresh |= created.contains(&(jump.table, chain));
        }
        if fresh || !kernel.has_rule(jump.table, jump.chain, &jump_args(jump))? {
            missing.push(jump);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        kernel.restore(&insertions(&missing))
    }
}

/// The rule's match and target arguments, as `iptables -C` takes them.
pub fn jump_args(jump: &JumpRule) -> Vec<String> {
    let mut args = crate::kernel::iptables::split_rule_args(&jump.matches);
    args.extend(["-j".to_string(), jump.target.to_string()]);
    args
}

/// Restore input inserting `jumps` at the top of their chains, in the given order, one
/// section per table.
fn insertions(jumps: &[&JumpRule]) -> String {
    let tables: BTreeSet<&str> = jumps.iter().map(|jump| jump.table).collect();
    let mut text = String::new();
    for table in tables {
        text.push('*');
        text.push_str(table);
        text.push('\n');
        for jump in jumps.iter().filter(|jump| jump.table == table) {
            text.push_str("-I ");
            text.push_str(jump.chain);
            if !jump.matches.is_empty() {
                text.push(' ');
                text.push_str(&jump.matches);
            }
            text.push_str(" -j ");
            text.push_str(jump.target);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::IpFamily;

    #[test]
    fn insertions_group_by_table_and_keep_the_order() {
        let jumps = jump_rules(IpFamily::V4, false);
        let nat: Vec<&JumpRule> = jumps.iter().rev().filter(|j| j.table == "nat").collect();
        let first_filter = jumps.iter().find(|j| j.table == "filter");
        let mut chosen = nat.clone();
        chosen.extend(first_filter);
        let text = insertions(&chosen);
        assert_eq!(
            text,
            "*filter\n\
             -I INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
             COMMIT\n\
             *nat\n\
             -I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
             -I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             COMMIT\n"
        );
    }
}
