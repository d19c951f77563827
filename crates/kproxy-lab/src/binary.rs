//! Finding the `kproxy` binary that runs the node agent: `$KPROXY_BIN`, else the running
//! program when it is `kproxy` itself (`kproxy demo`), else `kproxy` in the cargo target
//! directory the running test executable lives in (same profile first).

use crate::command::{run_tool, TOOL_TIMEOUT};
use crate::error::LabError;
use std::path::{Path, PathBuf};

/// The environment variable naming the kproxy binary to run.
pub const KPROXY_BIN: &str = "KPROXY_BIN";

/// A kproxy binary that accepts the node agent's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBinary {
    path: PathBuf,
}

impl AgentBinary {
    /// Finds the binary and checks that it runs the agent (`--help` lists
    /// `--cluster-file`).
    pub fn locate() -> Result<AgentBinary, LabError> {
        let path = candidates()
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                LabError::Binary(format!(
                    "not found; build it (`cargo build --bin kproxy`) or set {KPROXY_BIN}"
                ))
            })?;
        AgentBinary::at(path)
    }

    /// A given binary, checked as [`locate`](Self::locate) does.
    pub fn at(path: PathBuf) -> Result<AgentBinary, LabError> {
        let program = path.to_string_lossy().into_owned();
        let help = run_tool(&program, &["--help"], TOOL_TIMEOUT)
            .map_err(|e| LabError::Binary(e.to_string()))?;
        if !help.contains("--cluster-file") {
            return Err(LabError::NoAgent(program));
        }
        Ok(AgentBinary { path })
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(KPROXY_BIN) {
        return vec![PathBuf::from(path)];
    }
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    if exe.file_name().is_some_and(|n| n == "kproxy") {
        return vec![exe];
    }
    target_dir_candidates(&exe)
}

/// `kproxy` beside a test executable in `TARGET/PROFILE/deps/`: that profile, then the
/// others.
fn target_dir_candidates(exe: &Path) -> Vec<PathBuf> {
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(3).collect();
    let mut found: Vec<PathBuf> = dirs.iter().map(|d| d.join("kproxy")).collect();
    for dir in &dirs {
        for profile in ["release", "debug"] {
            let path = dir.join(profile).join("kproxy");
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_the_test_executable_first() {
        let found = target_dir_candidates(Path::new("/t/debug/deps/kproxy_lab-abc"));
        assert_eq!(found[0], Path::new("/t/debug/deps/kproxy"));
        assert!(found.contains(&PathBuf::from("/t/debug/kproxy")));
        assert!(found.contains(&PathBuf::from("/t/release/kproxy")));
        let debug = found.iter().position(|p| p == Path::new("/t/debug/kproxy"));
        let release = found
            .iter()
            .position(|p| p == Path::new("/t/release/kproxy"));
        assert!(debug < release);
    }
}
