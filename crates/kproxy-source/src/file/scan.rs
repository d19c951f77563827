//! Finding manifest files and telling, without reading them, whether they changed.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// File name endings read from a directory.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// What identifies one version of a file: a change of content, size, or a replacement by
/// another file (an editor's or a ConfigMap's atomic rename) changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Fingerprint {
    /// The fingerprint of the file at `path` (following symlinks).
    pub fn of(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Fingerprint {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The manifest files at `path`: the file itself, or the `.yaml`, `.yml` and `.json`
/// files directly in the directory (hidden ones skipped), in name order.
pub(crate) fn manifest_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        let visible = file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        let manifest = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
        if visible && manifest && std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_lists_its_visible_manifests_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["b.yaml", "a.json", "c.yml", "notes.txt", ".hidden.yaml"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
        let names: Vec<String> = manifest_files(dir.path())
            .expect("list")
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        assert_eq!(names, ["a.json", "b.yaml", "c.yml"]);
    }

    #[test]
    fn a_rewrite_changes_the_fingerprint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("m.yaml");
        std::fs::write(&file, "a").expect("write");
        let before = Fingerprint::of(&file).expect("stat");
        assert_eq!(Fingerprint::of(&file).expect("stat"), before);
        std::fs::write(&file, "ab").expect("write");
        assert_ne!(Fingerprint::of(&file).expect("stat"), before);
        assert!(manifest_files(&dir.path().join("missing")).is_err());
    }
}
