//! The run's scratch directory (kubeconfig, generated cluster, restore log, agent log),
//! removed when the run ends unless kept.

use std::path::PathBuf;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Workdir {
    path: PathBuf,
    keep: bool,
}

impl Workdir {
    /// Creates `TMP/NAME`.
    pub fn create(name: &str) -> Result<Workdir, String> {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Workdir { path, keep: false })
    }

    /// Leaves the directory in place when the run ends; returns its path.
    pub fn keep(&mut self) -> &PathBuf {
        self.keep = true;
        &self.path
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !self.keep {
            // Nothing else to do if it is already gone.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
