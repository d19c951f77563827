//! Removing what an earlier lab process left behind when it was killed before its drops
//! ran: namespaces and directories named `kpl-<pid>-...` whose process is gone.

use crate::command::ip;

/// Deletes leftover lab namespaces and work directories of dead processes; returns the
/// namespaces it deleted.
pub fn remove_stale_labs() -> Vec<String> {
    let Ok(listing) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    let stale: Vec<String> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| owner_is_gone(name))
        .map(str::to_string)
        .collect();
    for name in &stale {
        // Another sweeper may have been first; what is gone is gone.
        let _ = ip(&["netns", "del", name]);
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(owner_is_gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    stale
}

/// Whether `name` is a lab name (`kpl-<pid>-...`) of a process that no longer runs.
fn owner_is_gone(name: &str) -> bool {
    lab_owner(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// The process id in a lab name.
fn lab_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("kpl-")?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lab_names_have_owners() {
        assert_eq!(lab_owner("kpl-123-0-node"), Some(123));
        assert_eq!(lab_owner("kpl-123-4"), Some(123));
        assert_eq!(lab_owner("kproxy-node-1-0"), None);
        assert_eq!(lab_owner("kpl-x-0"), None);
        assert!(!owner_is_gone(&format!(
            "kpl-{}-0-node",
            std::process::id()
        )));
    }
}
