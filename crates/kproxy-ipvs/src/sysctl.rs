//! The sysctls IPVS mode needs, and setting them through [`Sysctl`].

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Reads and writes sysctls by their `/proc/sys` path (`net/ipv4/ip_forward`).
pub trait Sysctl {
    /// The current value, trimmed.
    fn read(&mut self, key: &str) -> Result<String>;

    /// Sets a value.
    fn write(&mut self, key: &str, value: &str) -> Result<()>;
}

/// [`Sysctl`] through the files under a `/proc/sys` directory.
#[derive(Debug, Clone)]
pub struct ProcSys {
    root: PathBuf,
}

impl ProcSys {
    /// The running kernel's `/proc/sys`.
    pub fn new() -> ProcSys {
        ProcSys::at("/proc/sys")
    }

    /// Files under `root` instead (for tests).
    pub fn at(root: impl Into<PathBuf>) -> ProcSys {
        ProcSys { root: root.into() }
    }
}

impl Default for ProcSys {
    fn default() -> Self {
        ProcSys::new()
    }
}

impl Sysctl for ProcSys {
    fn read(&mut self, key: &str) -> Result<String> {
        let path = self.root.join(key);
        std::fs::read_to_string(&path)
            .map(|v| v.trim().to_string())
            .map_err(|e| Error::io(format!("read {}", path.display()), e))
    }

    fn write(&mut self, key: &str, value: &str) -> Result<()> {
        let path = self.root.join(key);
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| Error::io(format!("write {value} to {}", path.display()), e))
    }
}

/// A kernel release, major and minor (`6.1.0-18-amd64` is 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl KernelVersion {
    /// Parses `uname -r` output; `None` when it does not start with `N.N`.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

/// One sysctl and the value IPVS mode wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Path under `/proc/sys`.
    pub key: &'static str,
    /// Wanted value.
    pub value: &'static str,
}

/// The sysctls IPVS mode sets on `kernel`, in order. `strict_arp` makes the
/// node answer ARP only for addresses of the asking interface
/// (`--ipvs-strict-arp`), so kube-ipvs0's addresses are not announced.
pub fn ipvs_settings(kernel: KernelVersion, strict_arp: bool) -> Vec<Setting> {
    let mut out = vec![Setting {
        key: "net/ipv4/vs/conntrack",
        value: "1",
    }];
    let reuse_mode_bug = KernelVersion { major: 4, minor: 1 } <= kernel
        && kernel < KernelVersion { major: 5, minor: 9 };
    if reuse_mode_bug {
        out.push(Setting {
            key: "net/ipv4/vs/conn_reuse_mode",
            value: "0",
        });
    }
    out.extend([
        Setting {
            key: "net/ipv4/vs/expire_nodest_conn",
            value: "1",
        },
        Setting {
            key: "net/ipv4/vs/expire_quiescent_template",
            value: "1",
        },
        Setting {
            key: "net/ipv4/ip_forward",
            value: "1",
        },
    ]);
    if strict_arp {
        out.extend([
            Setting {
                key: "net/ipv4/conf/all/arp_ignore",
                value: "1",
            },
            Setting {
                key: "net/ipv4/conf/all/arp_announce",
                value: "2",
            },
        ]);
    }
    out
}

/// Writes each setting whose current value differs; returns the keys written.
pub fn apply_settings(sysctl: &mut dyn Sysctl, settings: &[Setting]) -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for s in settings {
        if sysctl.read(s.key)? != s.value {
            sysctl.write(s.key, s.value)?;
            written.push(s.key);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_reuse_mode_is_set_only_on_kernels_with_the_bug() {
        let keys = |release: &str| -> Vec<&str> {
            let k = KernelVersion::parse(release).unwrap();
            ipvs_settings(k, false).iter().map(|s| s.key).collect()
        };
        assert!(keys("4.19.0-25-amd64").contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!keys("5.9.0").contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!keys("6.1.176").contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!keys("3.10.0-1160.el7.x86_64").contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn strict_arp_adds_arp_ignore_and_announce() {
        let k = KernelVersion { major: 6, minor: 1 };
        let strict = ipvs_settings(k, true);
        assert_eq!(strict.len(), ipvs_settings(k, false).len() + 2);
        assert_eq!(
            strict.last().map(|s| (s.key, s.value)),
            Some(("net/ipv4/conf/all/arp_announce", "2"))
        );
    }

    #[test]
    fn only_differing_values_are_written() {
        let dir = std::env::temp_dir().join(format!("kproxy-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4/vs")).unwrap();
        std::fs::write(dir.join("net/ipv4/vs/conntrack"), "1\n").unwrap();
        std::fs::write(dir.join("net/ipv4/ip_forward"), "0\n").unwrap();
        let settings = [
            Setting {
                key: "net/ipv4/vs/conntrack",
                value: "1",
            },
            Setting {
                key: "net/ipv4/ip_forward",
                value: "1",
            },
        ];
        let mut sys = ProcSys::at(&dir);
        assert_eq!(
            apply_settings(&mut sys, &settings).unwrap(),
            vec!["net/ipv4/ip_forward"]
        );
        assert_eq!(sys.read("net/ipv4/ip_forward").unwrap(), "1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
