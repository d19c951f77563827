//! The one place kproxy runs `nft`, behind [`NftRunner`], and a fake that keeps the
//! ruleset in memory by parsing the very text the real runner would send.

use super::listing::parse_listing;
use super::objects::Family;
use super::parse::parse_commands;
use super::state::{RulesetState, StateError, TableState};
use super::transaction::Transaction;
use std::io::Write;
use std::process::{Command, Stdio};

/// Why running `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started or talked to.
    #[error("cannot run {program}: {message}")]
    Spawn {
        /// The command line.
        program: String,
        /// The OS error.
        message: String,
    },
    /// `nft` ran and refused the batch.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        program: String,
        /// Exit status.
        status: String,
        /// What nft printed.
        stderr: String,
    },
    /// The fake refused an operation, as the kernel would.
    #[error("transaction refused: {0}")]
    Refused(#[from] StateError),
    /// Text could not be parsed.
    #[error("cannot parse nft text: {0}")]
    Parse(String),
}

/// Runs transactions against a kernel (or a fake of one).
pub trait NftRunner {
    /// Applies a transaction atomically.
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError>;
    /// Checks a transaction without applying it (`nft -c`).
    fn check(&mut self, tx: &Transaction) -> Result<(), NftError>;
    /// Reads one table; `None` when it does not exist.
    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError>;
}

/// The real runner: pipes batches to `nft -f -`.
#[derive(Debug, Clone)]
pub struct NftCommand {
    argv: Vec<String>,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand::new()
    }
}

impl NftCommand {
    /// Runs `nft` from `PATH`.
    pub fn new() -> NftCommand {
        NftCommand {
            argv: vec!["nft".to_string()],
        }
    }

    /// Runs `nft` through a wrapper, e.g. `["ip", "netns", "exec", "ns1", "nft"]`.
    pub fn with_argv(argv: Vec<String>) -> NftCommand {
        NftCommand { argv }
    }

    fn invoke(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let program = format!("{} {}", self.argv.join(" "), args.join(" "));
        let spawn_error = |e: std::io::Error| NftError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        };
        let (first, rest) = self.argv.split_first().ok_or_else(|| NftError::Spawn {
            program: program.clone(),
            message: "empty command".into(),
        })?;
        let mut child = Command::new(first)
            .args(rest)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn_error)?;
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if !output.status.success() {
            return Err(NftError::Failed {
                program,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl NftRunner for NftCommand {
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError> {
        if tx.is_empty() {
            return Ok(());
        }
        self.invoke(&["-f", "-"], Some(&tx.render())).map(|_| ())
    }

    fn check(&mut self, tx: &Transaction) -> Result<(), NftError> {
        self.invoke(&["-c", "-f", "-"], Some(&tx.render()))
            .map(|_| ())
    }

    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError> {
        match self.invoke(&["list", "table", family.keyword(), table], None) {
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

/// An in-memory kernel: parses the rendered batch text, applies it atomically, and keeps
/// the last transaction for tests that count operations.
#[derive(Debug, Clone, Default)]
pub struct FakeNft {
    state: RulesetState,
    last: Option<Transaction>,
    runs: usize,
}

impl FakeNft {
    /// An empty kernel.
    pub fn new() -> FakeNft {
        FakeNft::default()
    }

    /// A kernel preloaded with `add ...` command text.
    pub fn with_ruleset(text: &str) -> Result<FakeNft, NftError> {
        Ok(FakeNft {
            state: RulesetState::from_commands(text).map_err(NftError::Parse)?,
            ..FakeNft::default()
        })
    }

    /// The current ruleset.
    pub fn state(&self) -> &RulesetState {
        &self.state
    }

    /// The ruleset as `add` commands.
    pub fn dump(&self) -> String {
        self.state.dump()
    }

    /// The last transaction run successfully.
    pub fn last_transaction(&self) -> Option<&Transaction> {
        self.last.as_ref()
    }

    /// How many transactions were run successfully.
    pub fn runs(&self) -> usize {
        self.runs
    }

    fn reparse(tx: &Transaction) -> Result<Transaction, NftError> {
        let mut copy = Transaction::new(tx.family(), tx.table());
        for command in parse_commands(&tx.render()).map_err(|e| NftError::Parse(e.to_string()))? {
            if command.family != tx.family() || command.table != tx.table() {
                return Err(NftError::Parse("command for another table".into()));
            }
            copy.push(command.op);
        }
        Ok(copy)
    }
}

impl NftRunner for FakeNft {
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError> {
        let parsed = FakeNft::reparse(tx)?;
        self.state.apply(&parsed)?;
        self.last = Some(parsed);
        self.runs += 1;
        Ok(())
    }

    fn check(&mut self, tx: &Transaction) -> Result<(), NftError> {
        let parsed = FakeNft::reparse(tx)?;
        self.state.clone().apply(&parsed)?;
        Ok(())
    }

    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError> {
        Ok(self.state.table(family, table).cloned())
    }
}
