//! The `nft` tool for the nftables mode: kproxy-nftables' [`NftRunner`] over the agent's
//! tool runner (so a hung `nft` is killed after a deadline), with the batches of service
//! ports written over netlink instead (kproxy-nftables' `wire`), plus the cheap probe the
//! mode uses to notice that someone deleted or flushed its table: a netlink dump of one
//! chain's rules, since `nft list chain` reads the whole table first (seconds at 10,000
//! services).

use super::exec::{find_tool, run_tool, KernelError};
use crate::logging;
use kproxy_nftables::nft::listing::parse_listing;
use kproxy_nftables::nft::netlink::chain_rule_count;
use kproxy_nftables::nft::wire;
use kproxy_nftables::nft::{Family, TableState};
use kproxy_nftables::{FakeNft, NftError, NftRunner, Transaction};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the nftables mode needs from the kernel.
pub trait NftKernel: NftRunner + Send {
    /// Whether `chain` exists in `family table` and holds at least one rule.
    fn chain_has_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<bool, NftError>;
}

/// The real `nft`.
#[derive(Debug, Clone)]
pub struct ExecNft {
    program: PathBuf,
    timeout: Duration,
    /// Whether small batches go over netlink (off with `KPROXY_NFT_WRITER=nft`).
    netlink: bool,
}

impl ExecNft {
    /// Finds `nft` (or the program `KPROXY_NFT` names, for fault injection and the
    /// scale harness's byte counter); each invocation is killed after `timeout`.
    /// `KPROXY_NFT_WRITER=nft` sends every batch through `nft`, none over netlink: an
    /// escape hatch, and how the fault tests put a failing `nft` in the way of every
    /// sync.
    pub fn find(timeout: Duration) -> Result<ExecNft, KernelError> {
        let program = match std::env::var_os("KPROXY_NFT") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => find_tool("nft").ok_or_else(|| KernelError::Missing("nft".into()))?,
        };
        let netlink = std::env::var("KPROXY_NFT_WRITER").as_deref() != Ok("nft");
        Ok(ExecNft {
            program,
            timeout,
            netlink,
        })
    }

    fn invoke(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let program = format!("{} {}", self.program.display(), args.join(" "));
        let output = run_tool(&self.program, &args, stdin.map(str::as_bytes), self.timeout)
            .map_err(|e| NftError::Spawn {
                program: program.clone(),
                message: e.to_string(),
            })?;
        if output.success() {
            return Ok(output.stdout);
        }
        Err(NftError::Failed {
            program,
            status: output
                .code
                .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
            stderr: output.stderr.trim().to_string(),
        })
    }

    /// `nft list <kind> <family> <table> [chain]`, parsed; `None` when it does not exist.
    fn list(
        &self,
        kind: &str,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Option<TableState>, NftError> {
        let mut args = vec!["list", kind, family.keyword(), table];
        args.extend(chain);
        match self.invoke(&args, None) {
            Ok(text) => {
                let state = parse_listing(&text).map_err(NftError::Parse)?;
                Ok(state.table(family, table).cloned())
            }
            Err(NftError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl NftRunner for ExecNft {
    /// Batches in the forms service ports use go straight to the kernel over netlink
    /// (`nft` would first read the whole table); the rest, and any batch the kernel
    /// refuses there, go through `nft`.
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError> {
        if tx.is_empty() {
            return Ok(());
        }
        match self.netlink.then(|| wire::apply(tx)) {
            Some(Ok(true)) => return Ok(()),
            None | Some(Ok(false)) => {}
            Some(Err(e)) => logging::warn(format!(
                "a {} operation batch was refused over netlink ({e}); applying it with nft",
                tx.len()
            )),
        }
        self.invoke(&["-f", "-"], Some(&tx.render())).map(drop)
    }

    fn check(&mut self, tx: &Transaction) -> Result<(), NftError> {
        self.invoke(&["-c", "-f", "-"], Some(&tx.render()))
            .map(drop)
    }

    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError> {
        self.list("table", family, table, None)
    }
}

impl NftKernel for ExecNft {
    fn chain_has_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<bool, NftError> {
        match chain_rule_count(family, table, chain) {
            Ok(rules) => Ok(rules > 0),
            // No netlink socket (never seen as root): ask `nft`, slowly.
            Err(_) => {
                let listed = self.list("chain", family, table, Some(chain))?;
                Ok(listed
                    .and_then(|t| t.chains.get(chain).map(|c| !c.rules.is_empty()))
                    .unwrap_or(false))
            }
        }
    }
}

/// The state behind every [`SharedFakeNft`] handle.
#[derive(Debug, Default)]
pub struct SharedFakeNftState {
    /// The in-memory kernel.
    pub nft: FakeNft,
    /// How many of the next transactions are refused.
    pub fail_next_runs: usize,
}

/// kproxy-nftables' fake kernel, shared so a test can look at (and tamper with) it while
/// the agent owns a handle, with failure injection.
#[derive(Debug, Clone, Default)]
pub struct SharedFakeNft {
    state: Arc<Mutex<SharedFakeNftState>>,
}

impl SharedFakeNft {
    /// An empty kernel.
    pub fn new() -> SharedFakeNft {
        SharedFakeNft::default()
    }

    /// Locks the state for inspection or tampering.
    pub fn state(&self) -> MutexGuard<'_, SharedFakeNftState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NftRunner for SharedFakeNft {
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError> {
        let mut state = self.state();
        if state.fail_next_runs > 0 {
            state.fail_next_runs -= 1;
            return Err(NftError::Failed {
                program: "fake nft -f -".into(),
                status: "exit 1".into(),
                stderr: "injected failure".into(),
            });
        }
        state.nft.run(tx)
    }

    fn check(&mut self, tx: &Transaction) -> Result<(), NftError> {
        self.state().nft.check(tx)
    }

    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError> {
        self.state().nft.list_table(family, table)
    }
}

impl NftKernel for SharedFakeNft {
    fn chain_has_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<bool, NftError> {
        let listed = self.list_table(family, table)?;
        Ok(listed
            .and_then(|t| t.chains.get(chain).map(|c| !c.rules.is_empty()))
            .unwrap_or(false))
    }
}
