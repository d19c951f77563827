//! A fake iptables for tests: the three tool traits over kproxy-iptables' in-memory
//! [`FakeKernel`], shared so a test can look at (and tamper with) the kernel while the
//! agent owns its handle, with failure injection for restores and checks.

use super::exec::KernelError;
use super::iptables::{RestoreTool, RuleTool, SaveTool, StampTool};
use super::xt_stamp::TableStamp;
use kproxy_iptables::fake::FakeKernel;
use std::sync::{Arc, Mutex, MutexGuard};

/// The state behind every handle.
#[derive(Debug, Default)]
pub struct FakeIptablesState {
    /// The kernel's tables.
    pub kernel: FakeKernel,
    /// Restore inputs applied or refused, in order.
    pub restores: Vec<String>,
    /// How many of the next restores fail.
    pub fail_next_restores: usize,
    /// How many of the next rule checks and chain listings fail (as when another program
    /// holds the xtables lock past the wait).
    pub fail_next_checks: usize,
    /// Whether tables have stamps (as iptables-legacy's do); off, as with iptables-nft.
    pub stamps: bool,
    /// How many rule checks and chain listings were asked for.
    pub listings: usize,
}

/// A handle on a shared fake kernel.
#[derive(Debug, Clone, Default)]
pub struct FakeIptables {
    state: Arc<Mutex<FakeIptablesState>>,
}

impl FakeIptables {
    /// A fresh kernel with only the built-in chains.
    pub fn new() -> Self {
        FakeIptables::default()
    }

    /// Locks the state for inspection or tampering.
    pub fn state(&self) -> MutexGuard<'_, FakeIptablesState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn injected_check_failure(&self) -> Result<(), KernelError> {
        let mut state = self.state();
        state.listings += 1;
        if state.fail_next_checks == 0 {
            return Ok(());
        }
        state.fail_next_checks -= 1;
        Err(KernelError::Failed {
            program: "fake-iptables".into(),
            args: "-w 5 -S".into(),
            status: "exit 4".into(),
            stderr: "Another app is currently holding the xtables lock. Stopped waiting after 5s."
                .into(),
        })
    }

    fn refused(message: String) -> KernelError {
        KernelError::Failed {
            program: "fake-iptables-restore".into(),
            args: "--noflush --counters".into(),
            status: "exit 1".into(),
            stderr: message,
        }
    }
}

/// Joins arguments back into rule text, quoting those with spaces (as iptables-save does).
pub fn join_rule_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl RestoreTool for FakeIptables {
    fn restore(&mut self, input: &str) -> Result<(), KernelError> {
        let mut state = self.state();
        state.restores.push(input.to_string());
        if state.fail_next_restores > 0 {
            state.fail_next_restores -= 1;
            return Err(Self::refused("injected failure".into()));
        }
        let (deletes, rest): (Vec<&str>, Vec<&str>) =
            input.lines().partition(|l| l.starts_with("-D "));
        if !deletes.is_empty() {
            state.kernel = without_rules(&state.kernel, &deletes)?;
        }
        let rest = rest.join("\n") + "\n";
        state
            .kernel
            .restore(&rest)
            .map_err(|e| Self::refused(e.to_string()))
    }
}

/// The kernel without the rules named by `-D` lines (the in-memory kernel only knows
/// `-A` and `-X`, so it is rebuilt from its own dump).
fn without_rules(kernel: &FakeKernel, deletes: &[&str]) -> Result<FakeKernel, KernelError> {
    let mut dump: Vec<String> = kernel.save().lines().map(str::to_string).collect();
    for delete in deletes {
        let rule = format!("-A {}", &delete[3..]);
        match dump.iter().position(|line| *line == rule) {
            Some(index) => {
                dump.remove(index);
            }
            None => {
                return Err(FakeIptables::refused(format!(
                    "{delete}: Bad rule (does a matching rule exist in that chain?)"
                )))
            }
        }
    }
    let mut rebuilt = FakeKernel::new();
    rebuilt
        .restore(&(dump.join("\n") + "\n"))
        .map_err(|e| FakeIptables::refused(e.to_string()))?;
    Ok(rebuilt)
}

impl SaveTool for FakeIptables {
    fn save_table(&mut self, table: &str) -> Result<String, KernelError> {
        let all = self.state().kernel.save();
        let header = format!("*{table}");
        let mut out = String::new();
        let mut inside = false;
        for line in all.lines() {
            if line.starts_with('*') {
                inside = line == header;
            }
            if inside {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

impl StampTool for FakeIptables {
    fn table_stamp(&mut self, table: &str) -> Result<Option<TableStamp>, KernelError> {
        if !self.state().stamps {
            return Ok(None);
        }
        let text = self.save_table(table)?;
        Ok(Some(TableStamp::of(text.as_bytes())))
    }
}

impl RuleTool for FakeIptables {
    fn ensure_chain(&mut self, table: &str, chain: &str) -> Result<bool, KernelError> {
        let mut state = self.state();
        if state.kernel.has_chain(table, chain) {
            return Ok(false);
        }
        let declare = format!("*{table}\n:{chain} - [0:0]\nCOMMIT\n");
        state
            .kernel
            .restore(&declare)
            .map_err(|e| Self::refused(e.to_string()))?;
        Ok(true)
    }

    fn has_rule(&mut self, table: &str, chain: &str, rule: &[String]) -> Result<bool, KernelError> {
        self.injected_check_failure()?;
        let text = format!("-A {chain} {}", join_rule_args(rule));
        Ok(self
            .state()
            .kernel
            .chain_rules(table, chain)
            .is_some_and(|rules| rules.contains(&text)))
    }

    fn list_chain(&mut self, table: &str, chain: &str) -> Result<Option<Vec<String>>, KernelError> {
        self.injected_check_failure()?;
        let state = self.state();
        Ok(state.kernel.chain_rules(table, chain).map(|rules| {
            std::iter::once(format!("-N {chain}"))
                .chain(rules.iter().cloned())
                .collect()
        }))
    }
}
