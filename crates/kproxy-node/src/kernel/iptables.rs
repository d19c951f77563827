//! The iptables tools: one small trait per tool, and the real implementation that runs
//! `iptables-restore`, `iptables-save` and `iptables` of one family and backend.

use super::exec::{find_tool, run_tool, run_tool_with_input, InputWriter, KernelError, ToolOutput};
use super::xt_stamp::{table_stamp, TableStamp};
use kproxy_iptables::RestoreText;
use kproxy_model::IpFamily;
use kproxy_nftables::nft::netlink::table_chain_names;
use kproxy_nftables::nft::Family;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// kube-proxy's xtables lock argument: wait up to 5 s for the lock. (kube-proxy also
/// passes `-W 100000`, which iptables 1.8 ignores with a warning on every call.)
const WAIT_ARGS: [&str; 2] = ["-w", "5"];

/// How long a single `iptables` or `iptables-save` call may take.
const SHORT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The iptables implementation in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// `iptables-nft`: the nf_tables kernel API.
    Nft,
    /// `iptables-legacy`: the x_tables kernel API.
    Legacy,
}

impl Backend {
    /// The name used in tool names and logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

/// `iptables-restore --noflush`: applies a ruleset transaction.
pub trait RestoreTool {
    /// Applies restore input, leaving chains it does not mention alone.
    fn restore(&mut self, input: &str) -> Result<(), KernelError>;

    /// Applies restore input given in pieces (a proxier's sync). By default the pieces
    /// are joined and passed to [`RestoreTool::restore`].
    fn restore_text(&mut self, input: &RestoreText) -> Result<(), KernelError> {
        let text = input
            .text()
            .map_err(|e| KernelError::Input(e.to_string()))?;
        self.restore(&text)
    }
}

/// `iptables-save`: reads a table.
pub trait SaveTool {
    /// The table in `iptables-save` format.
    fn save_table(&mut self, table: &str) -> Result<String, KernelError>;

    /// The names of the table's chains; by default from [`SaveTool::save_table`].
    fn chain_names(&mut self, table: &str) -> Result<Vec<String>, KernelError> {
        Ok(chains_in_save_output(&self.save_table(table)?))
    }
}

/// Chain names declared in `iptables-save` output.
pub fn chains_in_save_output(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `iptables`: single-chain and single-rule operations.
pub trait RuleTool {
    /// Creates a chain unless it exists; whether it was created.
    fn ensure_chain(&mut self, table: &str, chain: &str) -> Result<bool, KernelError>;
    /// Whether a rule (match and target arguments, without the chain) exists.
    fn has_rule(&mut self, table: &str, chain: &str, rule: &[String]) -> Result<bool, KernelError>;
    /// The chain's rules in `-S` form, or `None` when the chain does not exist.
    fn list_chain(&mut self, table: &str, chain: &str) -> Result<Option<Vec<String>>, KernelError>;
}

/// A look at a table that tells whether it changed, without listing its rules.
pub trait StampTool {
    /// A stamp that changes whenever the table's rules change, or `None` where the
    /// backend has no cheap way to tell (then every check lists the rules).
    fn table_stamp(&mut self, table: &str) -> Result<Option<TableStamp>, KernelError>;
}

/// All the tools of one family and backend.
pub trait IptablesKernel: RestoreTool + SaveTool + RuleTool + StampTool + Send {}

impl<T: RestoreTool + SaveTool + RuleTool + StampTool + Send> IptablesKernel for T {}

/// Paths of the three tools of one family and backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesTools {
    /// The family.
    pub family: IpFamily,
    /// The backend.
    pub backend: Backend,
    /// `iptables-restore` (or `ip6tables-restore`).
    pub restore: PathBuf,
    /// `iptables-save`.
    pub save: PathBuf,
    /// `iptables`.
    pub iptables: PathBuf,
}

impl IptablesTools {
    /// Finds the tools for a family and backend. `KPROXY_IPTABLES_RESTORE` /
    /// `KPROXY_IP6TABLES_RESTORE` replace the restore tool (for fault injection).
    pub fn find(family: IpFamily, backend: Backend) -> Result<IptablesTools, KernelError> {
        let base = match family {
            IpFamily::V4 => "iptables",
            IpFamily::V6 => "ip6tables",
        };
        let locate = |suffix: &str| {
            let name = format!("{base}-{}{suffix}", backend.name());
            find_tool(&name).ok_or(KernelError::Missing(name))
        };
        let restore = match std::env::var_os(restore_override_var(family)) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => locate("-restore")?,
        };
        Ok(IptablesTools {
            family,
            backend,
            restore,
            save: locate("-save")?,
            iptables: locate("")?,
        })
    }
}

/// The variable that replaces a family's restore tool.
fn restore_override_var(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "KPROXY_IPTABLES_RESTORE",
        IpFamily::V6 => "KPROXY_IP6TABLES_RESTORE",
    }
}

/// Runs the real tools.
#[derive(Debug, Clone)]
pub struct ExecIptables {
    tools: IptablesTools,
    restore_timeout: Duration,
    writer: Option<PathBuf>,
}

impl ExecIptables {
    /// Runs these tools; a restore taking longer than `restore_timeout` is killed.
    pub fn new(tools: IptablesTools, restore_timeout: Duration) -> Self {
        ExecIptables {
            tools,
            restore_timeout,
            writer: None,
        }
    }

    /// Restores through `program xtables-restore` (kproxy's own x_tables writer, which hands
    /// what it does not encode to the real tool). Only the legacy backend has it, and not
    /// when the restore tool was replaced (`KPROXY_IPTABLES_RESTORE`).
    pub fn use_writer(&mut self, program: &Path) {
        if self.tools.backend == Backend::Legacy
            && std::env::var_os(restore_override_var(self.tools.family)).is_none()
        {
            self.writer = Some(program.to_path_buf());
        }
    }

    /// The tools run.
    pub fn tools(&self) -> &IptablesTools {
        &self.tools
    }

    /// The version line (`iptables v1.8.9 (nf_tables)`).
    pub fn version(&self) -> Result<String, KernelError> {
        let output = self.iptables(&["--version".to_string()])?;
        Ok(output.stdout.trim().to_string())
    }

    fn iptables(&self, args: &[String]) -> Result<ToolOutput, KernelError> {
        run_tool(&self.tools.iptables, args, None, SHORT_TOOL_TIMEOUT)
    }

    fn table_args(table: &str, op: &str, chain: &str, rule: &[String]) -> Vec<String> {
        let mut args: Vec<String> = WAIT_ARGS.iter().map(|a| a.to_string()).collect();
        args.extend(["-t", table, op, chain].map(String::from));
        args.extend(rule.iter().cloned());
        args
    }
}

impl ExecIptables {
    fn restore_input(&mut self, input: InputWriter<'_>) -> Result<(), KernelError> {
        let mut args: Vec<String> = Vec::new();
        if self.writer.is_some() {
            args.extend(["xtables-restore".to_string(), "--fallback".to_string()]);
            args.push(self.tools.restore.display().to_string());
            if self.tools.family == IpFamily::V6 {
                args.push("--ipv6".to_string());
            }
        }
        args.extend(WAIT_ARGS.iter().map(|a| a.to_string()));
        args.extend(["--noflush".to_string(), "--counters".to_string()]);
        let program = self.writer.as_ref().unwrap_or(&self.tools.restore);
        let output = run_tool_with_input(program, &args, Some(input), self.restore_timeout)?;
        if !output.success() {
            return Err(KernelError::failed(program, &args, &output));
        }
        if self.writer.is_some() && !output.stderr.trim().is_empty() {
            crate::logging::warn(output.stderr.trim());
        }
        Ok(())
    }
}

impl RestoreTool for ExecIptables {
    fn restore(&mut self, input: &str) -> Result<(), KernelError> {
        self.restore_input(&|pipe: &mut dyn Write| pipe.write_all(input.as_bytes()))
    }

    fn restore_text(&mut self, input: &RestoreText) -> Result<(), KernelError> {
        self.restore_input(&|pipe: &mut dyn Write| input.write_to(pipe))
    }
}

impl SaveTool for ExecIptables {
    /// iptables-nft's chains are read with one netlink chain dump: `iptables-save` parses
    /// every rule of the table to list them (3.5 s at 10,000 services). If the dump fails,
    /// `iptables-save` it is.
    fn chain_names(&mut self, table: &str) -> Result<Vec<String>, KernelError> {
        if self.tools.backend == Backend::Nft {
            let family = match self.tools.family {
                IpFamily::V4 => Family::Ip,
                IpFamily::V6 => Family::Ip6,
            };
            if let Ok(names) = table_chain_names(family, table) {
                return Ok(names);
            }
        }
        Ok(chains_in_save_output(&self.save_table(table)?))
    }

    fn save_table(&mut self, table: &str) -> Result<String, KernelError> {
        let args = vec!["-t".to_string(), table.to_string()];
        let output = run_tool(&self.tools.save, &args, None, SHORT_TOOL_TIMEOUT)?;
        if output.success() {
            Ok(output.stdout)
        } else {
            Err(KernelError::failed(&self.tools.save, &args, &output))
        }
    }
}

impl RuleTool for ExecIptables {
    fn ensure_chain(&mut self, table: &str, chain: &str) -> Result<bool, KernelError> {
        let args = Self::table_args(table, "-N", chain, &[]);
        let output = self.iptables(&args)?;
        if output.success() {
            Ok(true)
        } else if output.stderr.contains("exists") {
            Ok(false)
        } else {
            Err(KernelError::failed(&self.tools.iptables, &args, &output))
        }
    }

    fn has_rule(&mut self, table: &str, chain: &str, rule: &[String]) -> Result<bool, KernelError> {
        let args = Self::table_args(table, "-C", chain, rule);
        let output = self.iptables(&args)?;
        match output.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ if output.stderr.contains("does a matching rule exist")
                || output.stderr.contains("No chain/target/match by that name") =>
            {
                Ok(false)
            }
            _ => Err(KernelError::failed(&self.tools.iptables, &args, &output)),
        }
    }

    fn list_chain(&mut self, table: &str, chain: &str) -> Result<Option<Vec<String>>, KernelError> {
        let args = Self::table_args(table, "-S", chain, &[]);
        let output = self.iptables(&args)?;
        if output.success() {
            Ok(Some(output.stdout.lines().map(str::to_string).collect()))
        } else if output.code == Some(1) {
            Ok(None)
        } else {
            Err(KernelError::failed(&self.tools.iptables, &args, &output))
        }
    }
}

impl StampTool for ExecIptables {
    fn table_stamp(&mut self, table: &str) -> Result<Option<TableStamp>, KernelError> {
        match self.tools.backend {
            // iptables-nft lists one chain without reading the others.
            Backend::Nft => Ok(None),
            Backend::Legacy => table_stamp(self.tools.family, table)
                .map(Some)
                .map_err(|source| KernelError::Syscall {
                    what: format!("reading the {table} table's info"),
                    source,
                }),
        }
    }
}

pub use kproxy_xtables::args::split_rule_args;
