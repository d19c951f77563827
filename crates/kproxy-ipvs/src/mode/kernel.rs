//! [`IpvsKernel`]: the one place the ipvs mode touches the kernel. It observes what the
//! kernel holds before a sync and applies an [`IpvsSyncPlan`] through the crate's seams
//! (IPVS handle, ipset runner, kube-ipvs0 link, host addresses, iptables runner).

use crate::error::Result;
use crate::handle::IpvsHandle;
use crate::ipset::{render_destroy, IpsetRunner};
use crate::link::{VipInterface, KUBE_IPVS0};
use crate::sysctl::{apply_settings, ipvs_settings, KernelVersion, Sysctl};
use crate::types::Timeouts;

use super::host::{HostAddresses, IptablesRunner};
use super::proxier::{IpvsSyncPlan, Observed};
use super::rules::{jump_rules, render_cleanup};

/// How applying a plan went. Any error means the proxier should retry.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// What failed, in order, as readable messages.
    pub errors: Vec<String>,
    /// Whether the iptables restore succeeded (and so the clean-up steps ran).
    pub restored: bool,
}

impl ApplyReport {
    /// Whether everything was applied.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The kernel seams of the ipvs mode, for one IP family.
#[derive(Debug)]
pub struct IpvsKernel<H, S, L, A, T> {
    /// The IPVS table.
    pub ipvs: H,
    /// ipsets.
    pub ipset: S,
    /// kube-ipvs0.
    pub link: L,
    /// The host's addresses.
    pub host: A,
    /// iptables for this family.
    pub iptables: T,
}

impl<H, S, L, A, T> IpvsKernel<H, S, L, A, T>
where
    H: IpvsHandle,
    S: IpsetRunner,
    L: VipInterface,
    A: HostAddresses,
    T: IptablesRunner,
{
    /// Start-up: the sysctls IPVS mode needs (only those that differ are written) and the
    /// IPVS connection timeouts (zero fields keep the kernel's). Returns the keys written.
    pub fn start(
        &mut self,
        sysctl: &mut dyn Sysctl,
        kernel: KernelVersion,
        strict_arp: bool,
        timeouts: Timeouts,
    ) -> Result<Vec<&'static str>> {
        let written = apply_settings(sysctl, &ipvs_settings(kernel, strict_arp))?;
        if timeouts != Timeouts::default() {
            self.ipvs.set_timeouts(timeouts)?;
        }
        Ok(written)
    }

    /// Ensures kube-ipvs0 exists and reads what the next sync plans against.
    pub fn observe(&mut self) -> Result<Observed> {
        self.link.ensure()?;
        Ok(Observed {
            services: self.ipvs.state()?,
            bound: self.link.addresses()?,
            host_addresses: self.host.addresses_except(KUBE_IPVS0)?,
        })
    }

    /// Applies a plan in its order; the jump rules go in right after the restore that
    /// creates their chains. A failed ipset restore stops the sync (the rules would name
    /// missing sets); a failed iptables restore skips the clean-up steps.
    pub fn apply(&mut self, plan: &IpvsSyncPlan) -> ApplyReport {
        let mut report = ApplyReport::default();
        if let Err(e) = self.ipset.restore(&plan.ipset_restore) {
            report.errors.push(format!("ipset restore: {e}"));
            return report;
        }
        if let Err(e) = self.link.add_addresses(&plan.bind) {
            report.errors.push(format!("bind to {KUBE_IPVS0}: {e}"));
        }
        self.apply_ipvs(&plan.ipvs_ops, &mut report);
        if let Err(e) = self.iptables.restore(&plan.iptables_restore) {
            report.errors.push(format!("iptables restore: {e}"));
            return report;
        }
        for rule in &plan.jump_rules {
            if let Err(e) = self.iptables.ensure_jump(rule) {
                report
                    .errors
                    .push(format!("jump {}: {e}", rule.rule_text()));
            }
        }
        report.restored = true;
        if let Err(e) = self.link.remove_addresses(&plan.unbind) {
            report
                .errors
                .push(format!("unbind addresses from {KUBE_IPVS0}: {e}"));
        }
        self.apply_ipvs(&plan.stale_services, &mut report);
        report
    }

    /// `--cleanup`: flushes IPVS, deletes kube-ipvs0, removes the jump rules, flushes and
    /// deletes the mode's chains, then destroys its sets (only unreferenced sets can go).
    /// Missing pieces are fine; every failure is reported.
    pub fn cleanup(&mut self, set_names: &[String]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut note = |what: &str, result: Result<()>| {
            if let Err(e) = result {
                errors.push(format!("{what}: {e}"));
            }
        };
        note("flush IPVS", self.ipvs.flush());
        note("delete kube-ipvs0", self.link.delete());
        for rule in jump_rules() {
            note("remove jump rule", self.iptables.remove_jump(&rule));
        }
        note("delete chains", self.iptables.restore(&render_cleanup()));
        note(
            "destroy sets",
            self.ipset.restore(&render_destroy(set_names)),
        );
        errors
    }

    fn apply_ipvs(&mut self, ops: &[crate::ops::IpvsOp], report: &mut ApplyReport) {
        if ops.is_empty() {
            return;
        }
        match self.ipvs.apply(ops) {
            Ok(failures) => report.errors.extend(
                failures
                    .iter()
                    .map(|f| format!("ipvs {}: {}", f.op, f.error)),
            ),
            Err(e) => report.errors.push(format!("ipvs: {e}")),
        }
    }
}
