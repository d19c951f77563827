//! `kproxy xtables-restore` (kproxy's own x_tables writer) programs exactly what
//! `iptables-legacy-restore` programs. Two throwaway network namespaces get the same restore
//! inputs in the same order: A through the real tool (`iptables-legacy-restore` /
//! `ip6tables-legacy-restore -w 5 --noflush --counters`), B through
//! `kproxy xtables-restore --fallback <that tool> ...`. After every step both must agree on
//! success or failure, the kernel's raw tables (`XtSocket` info and entries of filter, nat,
//! mangle and raw, both families) must be byte-identical, and so must `iptables-legacy-save -c`
//! and `ip6tables-legacy-save -c` (comment lines aside). The one exception is the built-in
//! chains' policy counters, which iptables 1.8.9 resets on every commit and the writer
//! keeps (see [`KernelState::without_policy_counters`]); the foreign-content test checks
//! that the writer keeps them.
//!
//! Covered: the first sync of every iptables conformance cluster (with the case's
//! `proxier.yaml` settings and its nfacct objects created), partial syncs of a 50-service
//! dual-stack cluster (`-D`, `-I`, `-X`), foreign chains and their counters kept across
//! kproxy's syncs, the fallback to the real tool for input the writer does not encode, input
//! the kernel refuses, and the xtables lock (`XTABLES_LOCKFILE`, exit status 4).
//!
//! Needs root, the iptables-legacy tools and a built `kproxy` (`cargo build --release --bins`);
//! under `CI=true` a missing requirement fails the test, elsewhere it is skipped loudly. The
//! root namespace's firewall is never touched; the xtables lock is a private file.

mod support;

// The root crate's reader of a case's proxier.yaml; the tracer addresses it also reads
// are not used here.
#[allow(dead_code)]
#[path = "../../../tests/support/proxier_yaml.rs"]
mod proxier_yaml;

use kproxy_iptables::{
    is_builtin_chain, is_verdict, jump_rules, IptablesProxier, IptablesSettings, LocalDetector,
};
use kproxy_lab::command::tool_exists;
use kproxy_lab::require::skip_or_fail;
use kproxy_lab::{AgentBinary, LabError, Netns};
use kproxy_model::{
    parse_manifest, ClusterStore, IpFamily, ObjectKind, ObjectRef, Snapshot, StoreEvent,
};
use kproxy_node::iptables_mode::{CANARY_CHAIN, CANARY_TABLES};
use kproxy_node::kernel::exec::find_tool;
use kproxy_node::kernel::xt_socket::XtSocket;
use kproxy_xtables::layout::{
    ERROR_NAME_LEN, ERROR_TARGET, EXTENSION_HEADER, EXTENSION_NAME_LEN, HOOKS, HOOK_CHAINS,
};
use kproxy_xtables::table::TableInfo;
use kproxy_xtables::Family;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::held_lock::HeldLock;

/// The tables compared after every step.
const TABLES: [&str; 4] = ["filter", "nat", "mangle", "raw"];
/// What the test runs besides kproxy.
const TOOLS: [&str; 5] = [
    "ip",
    "iptables-legacy-restore",
    "ip6tables-legacy-restore",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
];
/// What the writer prints when it hands input to the real tool.
const FALLBACK_NOTICE: &str = "wrote it instead";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The kproxy binary, or `None` after a skip notice (a failure under `CI=true`).
fn prerequisites(test: &str) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let problem = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        TOOLS
            .iter()
            .find(|t| !tool_exists(t))
            .map(|t| format!("{t} is not installed"))
    };
    let binary = match problem {
        Some(reason) => Err(LabError::Unsupported(reason)),
        None => AgentBinary::locate().and_then(|b| writer_binary(b.path())),
    };
    binary.map_err(|e| skip_or_fail(test, &e)).ok()
}

/// The binary, when it has the `xtables-restore` subcommand.
fn writer_binary(path: &Path) -> Result<PathBuf, LabError> {
    let help = Command::new(path)
        .args(["xtables-restore", "--help"])
        .output();
    match help {
        Ok(output) if output.status.success() => Ok(path.to_path_buf()),
        _ => Err(LabError::Binary(format!(
            "{} has no xtables-restore; run `cargo build --release --bins`",
            path.display()
        ))),
    }
}

/// The tools' prefix for a family.
fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "iptables",
        IpFamily::V6 => "ip6tables",
    }
}

/// The codec's name for a family.
fn xt_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::V4,
        IpFamily::V6 => Family::V6,
    }
}

/// One table as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableBlob {
    family: IpFamily,
    table: &'static str,
    /// `struct ipt_getinfo`.
    info: Vec<u8>,
    /// The entries (`IPT_SO_GET_ENTRIES`).
    entries: Vec<u8>,
}

/// A namespace's tables: raw blobs and `-save -c` of both families.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelState {
    blobs: Vec<TableBlob>,
    saves: Vec<String>,
}

impl KernelState {
    /// The state with the built-in chains' policy counters zeroed. iptables 1.8.9's libiptc
    /// resets them whenever it commits their table (`COUNTER_MAP_ZEROED`, a regression that
    /// upstream reverted in August 2023: netfilter bugzilla #912); the writer keeps them,
    /// as libiptc did before and does again. The foreign-content test checks that it does.
    fn without_policy_counters(&self) -> KernelState {
        let blobs = self
            .blobs
            .iter()
            .map(|blob| {
                let info = TableInfo::from_bytes(&blob.info).expect("table info");
                let counters = xt_family(blob.family).layout().counters;
                let mut entries = blob.entries.clone();
                for hook in (0..HOOKS).filter(|h| info.valid_hooks & (1 << h) != 0) {
                    let at = info.underflow[hook] as usize + counters;
                    entries[at..at + 16].fill(0);
                }
                TableBlob {
                    entries,
                    ..blob.clone()
                }
            })
            .collect();
        let saves = self
            .saves
            .iter()
            .map(|save| {
                save.lines()
                    .map(|line| {
                        let built_in = line
                            .strip_prefix(':')
                            .and_then(|l| l.split(' ').next())
                            .is_some_and(is_builtin_chain);
                        match line.split_once(" [") {
                            Some((policy, _)) if built_in => format!("{policy}\n"),
                            _ => format!("{line}\n"),
                        }
                    })
                    .collect()
            })
            .collect();
        KernelState { blobs, saves }
    }

    /// `-save -c` of a family.
    fn save(&self, family: IpFamily) -> &str {
        &self.saves[usize::from(family == IpFamily::V6)]
    }
}

/// The outcome of one restore.
#[derive(Debug)]
struct Restored {
    code: Option<i32>,
    stderr: String,
}

impl Restored {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Namespace A (the real restore tool) and namespace B (kproxy's writer), with a private
/// xtables lock file.
struct Pair {
    tool: Netns,
    writer: Netns,
    binary: PathBuf,
    lock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    /// Two fresh namespaces, named so that kproxy-lab's sweep removes them if this process
    /// dies before their drops run.
    fn new(binary: &Path, tag: &str) -> Pair {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = |side: &str| format!("kpl-{}-xw{n}-{tag}-{side}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        Pair {
            tool: Netns::create(&name("a")).expect("namespace A"),
            writer: Netns::create(&name("b")).expect("namespace B"),
            binary: binary.to_path_buf(),
            lock: dir.path().join("xtables.lock"),
            _dir: dir,
        }
    }

    /// The real restore tool of a family.
    fn tool_path(family: IpFamily) -> PathBuf {
        let name = format!("{}-legacy-restore", family_name(family));
        find_tool(&name).unwrap_or_else(|| panic!("{name} not found"))
    }

    /// Runs the real tool in A.
    fn restore_with_tool(&self, family: IpFamily, input: &str, wait: u32) -> Restored {
        let args = restore_args(wait);
        run_with_input(
            &self.tool,
            &Self::tool_path(family),
            &args,
            input,
            &self.lock,
        )
    }

    /// Runs kproxy's writer in B, as the agent does.
    fn restore_with_writer(&self, family: IpFamily, input: &str, wait: u32) -> Restored {
        let mut args = vec!["xtables-restore".to_string(), "--fallback".to_string()];
        args.push(Self::tool_path(family).display().to_string());
        if family == IpFamily::V6 {
            args.push("--ipv6".to_string());
        }
        args.extend(restore_args(wait));
        run_with_input(&self.writer, &self.binary, &args, input, &self.lock)
    }

    /// The same input through the tool in A and the writer in B: both agree on success or
    /// failure and leave identical tables. Returns the writer's outcome and B's tables.
    fn step(&self, family: IpFamily, input: &str, what: &str) -> (Restored, KernelState) {
        let by_tool = self.restore_with_tool(family, input, 5);
        let by_writer = self.restore_with_writer(family, input, 5);
        assert_eq!(
            by_tool.ok(),
            by_writer.ok(),
            "{what}: the tool and the writer disagree.\ntool: {by_tool:?}\nwriter: {by_writer:?}\n\
             input:\n{}",
            excerpt(input)
        );
        (by_writer, self.assert_same(what))
    }

    /// A restore the writer must encode and apply itself, without the real tool.
    fn write(&self, family: IpFamily, input: &str, what: &str) -> KernelState {
        let (restored, state) = self.step(family, input, what);
        assert!(
            restored.ok(),
            "{what}: both failed: {}\ninput:\n{}",
            restored.stderr,
            excerpt(input)
        );
        assert!(
            !restored.stderr.contains(FALLBACK_NOTICE),
            "{what}: the writer fell back: {}input:\n{}",
            restored.stderr,
            excerpt(input)
        );
        state
    }

    /// Input restored with the real tool in both namespaces (content kproxy did not write).
    fn foreign(&self, family: IpFamily, input: &str) {
        for ns in [&self.tool, &self.writer] {
            let args = restore_args(5);
            let restored = run_with_input(ns, &Self::tool_path(family), &args, input, &self.lock);
            assert!(restored.ok(), "foreign content refused: {restored:?}");
        }
        self.assert_same("foreign content");
    }

    /// Creates these nfacct objects in both namespaces.
    fn add_nfacct(&self, names: &[String]) {
        for ns in [&self.tool, &self.writer] {
            for name in names {
                ns.enter(|| add_nfacct(name))
                    .expect("enter namespace")
                    .unwrap_or_else(|e| panic!("nfacct object {name}: {e}"));
            }
        }
    }

    /// Both namespaces' tables; panics, naming the first difference, unless identical
    /// (policy counters aside, see [`KernelState::without_policy_counters`]). Returns B's.
    fn assert_same(&self, what: &str) -> KernelState {
        let b = kernel_state(&self.writer);
        let (x, y) = (
            kernel_state(&self.tool).without_policy_counters(),
            b.without_policy_counters(),
        );
        let saves = first_line_difference(&x.saves.join(""), &y.saves.join(""));
        for (t, w) in x.blobs.iter().zip(&y.blobs) {
            assert!(
                t == w,
                "{what}: {:?} {} differs (A: iptables-legacy-restore, B: kproxy \
                 xtables-restore)\n{}\n-save -c: {saves}",
                t.family,
                t.table,
                describe_difference(t, w)
            );
        }
        let tables = |s: &KernelState| -> Vec<String> {
            s.blobs
                .iter()
                .map(|t| format!("{:?} {}", t.family, t.table))
                .collect()
        };
        assert_eq!(tables(&x), tables(&y), "{what}: tables present");
        assert!(x.saves == y.saves, "{what}: -save -c differs: {saves}");
        b
    }

    /// Both namespaces' tables as they are, A's first.
    fn states(&self) -> (KernelState, KernelState) {
        (kernel_state(&self.tool), kernel_state(&self.writer))
    }
}

/// What the agent passes to the restore tool, with `-w wait`.
fn restore_args(wait: u32) -> Vec<String> {
    ["-w", &wait.to_string(), "--noflush", "--counters"]
        .map(String::from)
        .to_vec()
}

/// Runs `program args...` in `ns` with `input` on standard input and the xtables lock at
/// `lock`.
fn run_with_input(
    ns: &Netns,
    program: &Path,
    args: &[String],
    input: &str,
    lock: &Path,
) -> Restored {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(program)
        .args(args)
        .env("XTABLES_LOCKFILE", lock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut stdin = child.stdin.take().expect("stdin piped");
    let output = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A tool that exits early closes the pipe; its status tells why.
            let _ = stdin.write_all(input.as_bytes());
        });
        child.wait_with_output().expect("restore runs")
    });
    Restored {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The tables of a namespace: every one of [`TABLES`] in both families, read from a thread
/// inside it, and both families' `-save -c` without comment lines.
fn kernel_state(ns: &Netns) -> KernelState {
    let blobs = ns
        .enter(|| {
            let mut blobs = Vec::new();
            for family in [IpFamily::V4, IpFamily::V6] {
                let socket = XtSocket::open(family).expect("raw socket");
                for table in TABLES {
                    let Some(info) = socket.info_bytes(table).expect("table info") else {
                        continue;
                    };
                    let size = TableInfo::from_bytes(&info).expect("table info").size;
                    let entries = socket.entries(table, size).expect("table entries");
                    blobs.push(TableBlob {
                        family,
                        table,
                        info: info.to_vec(),
                        entries,
                    });
                }
            }
            blobs
        })
        .expect("enter namespace");
    let saves = [IpFamily::V4, IpFamily::V6]
        .map(|family| {
            let tool = format!("{}-legacy-save", family_name(family));
            let text = ns.exec(&tool, &["-c"]).expect("-save runs");
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect()
        })
        .to_vec();
    KernelState { blobs, saves }
}

/// Creates an nfacct object (`nfacct add NAME`) in the calling thread's namespace.
fn add_nfacct(name: &str) -> std::io::Result<()> {
    // nfnetlink: subsystem NFNL_SUBSYS_ACCT (7), message NFNL_MSG_ACCT_NEW (0); the name
    // is attribute NFACCT_NAME (1), NUL-terminated.
    const ACCT_NEW: u16 = 7 << 8;
    const NFACCT_NAME: u16 = 1;
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
    let attr_len = 4 + name.len() + 1;
    let total = 16 + 4 + attr_len.next_multiple_of(4);
    let mut message = Vec::with_capacity(total);
    message.extend((total as u32).to_ne_bytes());
    message.extend(ACCT_NEW.to_ne_bytes());
    message.extend((flags as u16).to_ne_bytes());
    message.extend([1u32, 0].map(u32::to_ne_bytes).concat());
    message.extend([libc::AF_UNSPEC as u8, 0, 0, 0]);
    message.extend((attr_len as u16).to_ne_bytes());
    message.extend(NFACCT_NAME.to_ne_bytes());
    message.extend(name.as_bytes());
    message.resize(total, 0);
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_NETFILTER)),
    )?;
    socket.send(&message)?;
    let mut reply = [0u8; 512];
    let len = (&socket).read(&mut reply)?;
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    match (len >= 20, kind == libc::NLMSG_ERROR as u16, code) {
        (true, true, 0) => Ok(()),
        (true, true, code) => Err(std::io::Error::from_raw_os_error(-code)),
        _ => Err(std::io::Error::other("unexpected netlink reply")),
    }
}

/// The input itself when short, else its start.
fn excerpt(input: &str) -> String {
    const MAX: usize = 4000;
    match input.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}\n... ({} bytes in all)", &input[..cut], input.len()),
        None => input.to_string(),
    }
}

/// The first line where two texts differ, with the lines around it.
fn first_line_difference(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(0);
    let around = |lines: &[&str]| -> String {
        lines
            .iter()
            .enumerate()
            .skip(at.saturating_sub(3))
            .take(7)
            .map(|(i, line)| format!("  {}: {line}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "first different line {}\nA:\n{}\nB:\n{}",
        at + 1,
        around(&a),
        around(&b)
    )
}

/// The entries of a blob, as (offset, size), walked by each entry's `next_offset`.
fn entry_spans(family: IpFamily, blob: &[u8]) -> Vec<(usize, usize)> {
    let next = xt_family(family).layout().target_offset + 2;
    let mut spans = Vec::new();
    let mut at = 0;
    while at + next + 2 <= blob.len() {
        let size = usize::from(u16::from_ne_bytes([blob[at + next], blob[at + next + 1]]));
        if size == 0 {
            break;
        }
        spans.push((at, size.min(blob.len() - at)));
        at += size;
    }
    spans
}

/// The NUL-terminated name at the start of `bytes`.
fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The target's name of the entry at `offset`, and for an `ERROR` target (a user chain's
/// head) the chain's name.
fn target_of(family: IpFamily, blob: &[u8], offset: usize) -> (String, Option<String>) {
    let at = offset + xt_family(family).layout().target_offset;
    let target = offset + usize::from(u16::from_ne_bytes([blob[at], blob[at + 1]]));
    let name = c_name(
        blob.get(target + 2..target + 2 + EXTENSION_NAME_LEN)
            .unwrap_or(&[]),
    );
    let data = target + EXTENSION_HEADER;
    let chain = (name == ERROR_TARGET)
        .then(|| c_name(blob.get(data..data + ERROR_NAME_LEN).unwrap_or(&[])));
    (name, chain)
}

/// Which chain entry `index` is in and its position there (0: a user chain's head).
fn entry_place(blob: &TableBlob, spans: &[(usize, usize)], index: usize) -> String {
    let info = TableInfo::from_bytes(&blob.info).expect("table info");
    let mut chain = "?".to_string();
    let mut position = 0;
    for &(offset, _) in spans.iter().take(index + 1) {
        let hook = (0..HOOKS)
            .find(|&h| info.valid_hooks & (1 << h) != 0 && info.hook_entry[h] as usize == offset);
        if let Some(hook) = hook {
            chain = HOOK_CHAINS[hook].to_string();
            position = 0;
        }
        match target_of(blob.family, &blob.entries, offset) {
            (_, Some(name)) => {
                chain = name;
                position = 0;
            }
            _ => position += 1,
        }
    }
    format!("chain {chain}, entry {position} of it")
}

/// 16 bytes a line, offsets relative to the entry.
fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(row, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("  {:4}: {}", row * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where two blobs of one table differ: the table info, or the first entry that differs,
/// with its place, the bytes that differ and both entries in full.
fn describe_difference(tool: &TableBlob, writer: &TableBlob) -> String {
    if tool.info != writer.info {
        return format!(
            "table info differs:\n  A: {:?}\n  B: {:?}",
            TableInfo::from_bytes(&tool.info).expect("table info"),
            TableInfo::from_bytes(&writer.info).expect("table info")
        );
    }
    let (a, b) = (
        entry_spans(tool.family, &tool.entries),
        entry_spans(writer.family, &writer.entries),
    );
    let bytes = |blob: &TableBlob, span: Option<&(usize, usize)>| -> Vec<u8> {
        span.map(|&(o, l)| blob.entries[o..o + l].to_vec())
            .unwrap_or_default()
    };
    let Some(index) =
        (0..a.len().max(b.len())).find(|&i| bytes(tool, a.get(i)) != bytes(writer, b.get(i)))
    else {
        return "entries differ outside any entry".to_string();
    };
    let (x, y) = (bytes(tool, a.get(index)), bytes(writer, b.get(index)));
    let differing: Vec<String> = (0..x.len().max(y.len()))
        .filter(|&i| x.get(i) != y.get(i))
        .take(32)
        .map(|i| format!("+{i}: A {:02x?} B {:02x?}", x.get(i), y.get(i)))
        .collect();
    let offset = a.get(index).map_or(0, |s| s.0);
    let target = a
        .get(index)
        .map(|&(o, _)| target_of(tool.family, &tool.entries, o).0)
        .unwrap_or_default();
    format!(
        "first differing entry: #{index} at offset {offset} ({}, target {target}), {} vs {} \
         bytes\ndiffering bytes: {}\nA's entry:\n{}\nB's entry:\n{}",
        entry_place(tool, &a, index),
        x.len(),
        y.len(),
        differing.join(", "),
        hex_dump(&x),
        hex_dump(&y)
    )
}

/// What the agent puts in place before its first full sync (`ensure_jumps`): the canary
/// chains, the chains the jump rules lead to, and the jump rules at the top of their chains,
/// as one restore.
fn jumps_input(settings: &IptablesSettings) -> String {
    let jumps = jump_rules(settings.family, settings.localhost_node_ports);
    let mut text = String::new();
    for table in TABLES {
        let mut chains: BTreeSet<&str> = BTreeSet::new();
        if CANARY_TABLES.contains(&table) {
            chains.insert(CANARY_CHAIN);
        }
        let in_table: Vec<_> = jumps.iter().filter(|j| j.table == table).collect();
        chains.extend(
            in_table
                .iter()
                .flat_map(|j| [j.chain, j.target])
                .filter(|c| !is_builtin_chain(c) && !is_verdict(c)),
        );
        if chains.is_empty() {
            continue;
        }
        text.push_str(&format!("*{table}\n"));
        for chain in chains {
            text.push_str(&format!(":{chain} - [0:0]\n"));
        }
        // Each inserted at the top, the last first, so they end up in order.
        for jump in in_table.iter().rev() {
            let matches = if jump.matches.is_empty() {
                String::new()
            } else {
                format!("{} ", jump.matches)
            };
            text.push_str(&format!("-I {} {matches}-j {}\n", jump.chain, jump.target));
        }
        text.push_str("COMMIT\n");
    }
    text
}

/// One family's view of a cluster and the proxier rendering it, driven as the agent drives
/// it: changes taken from the store, the snapshot refreshed, a sync rendered.
struct Renderer {
    store: ClusterStore,
    snapshot: Snapshot,
    proxier: IptablesProxier,
}

impl Renderer {
    fn new(settings: IptablesSettings, manifest: &str) -> Renderer {
        let objects = parse_manifest(manifest).expect("cluster parses").objects;
        Renderer {
            store: ClusterStore::from_objects(objects),
            snapshot: Snapshot::new(settings.family, settings.topology.node_name.clone()),
            proxier: IptablesProxier::new(settings),
        }
    }

    fn family(&self) -> IpFamily {
        self.proxier.settings().family
    }

    /// The next sync written into both namespaces (its chunks, then its main restore);
    /// returns the main restore's text.
    fn sync_into(&mut self, pair: &Pair, what: &str) -> String {
        let changed = self.store.take_changes().services;
        self.snapshot
            .refresh(&self.store, &changed, &mut Vec::new());
        let plan = self.proxier.sync(&self.snapshot, &changed, Instant::now());
        let family = self.family();
        for (n, chunk) in plan.chunks.iter().enumerate() {
            let text = chunk.text().expect("restore text");
            pair.write(family, &text, &format!("{what}, chunk {n}"));
        }
        let text = plan.restore.text().expect("restore text");
        pair.write(family, &text, what);
        self.proxier.applied(true);
        text
    }
}

/// Every iptables conformance case that has a cluster.
fn conformance_cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/iptables");
    let mut cases = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("conformance directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        if dir.join("cluster.yaml").exists() && dir.join("proxier.yaml").exists() {
            cases.push(dir);
        }
    }
    cases.sort();
    cases
}

/// The jumps and the first sync of one conformance case, in a fresh pair of namespaces
/// holding the nfacct objects the case's proxier was told exist.
fn first_sync(binary: &Path, dir: &Path, case: &str) {
    let settings = proxier_yaml::load(&dir.join("proxier.yaml"))
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .iptables;
    let manifest = std::fs::read_to_string(dir.join("cluster.yaml")).expect("cluster.yaml");
    let pair = Pair::new(binary, "case");
    pair.add_nfacct(&settings.nfacct_counters);
    let jumps = jumps_input(&settings);
    pair.write(settings.family, &jumps, &format!("{case}: jumps"));
    Renderer::new(settings, &manifest).sync_into(&pair, &format!("{case}: first sync"));
}

/// The text a panic carried.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

#[test]
fn first_syncs_of_the_conformance_clusters_program_what_iptables_restore_programs() {
    let Some(binary) = prerequisites("xtables_writer conformance first syncs") else {
        return;
    };
    let cases = conformance_cases();
    assert!(cases.len() >= 40, "conformance clusters: {}", cases.len());
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    // Every case runs, so that one report lists every cluster that differs.
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            let case = dir
                .strip_prefix(&tests)
                .unwrap_or(dir)
                .display()
                .to_string();
            std::panic::catch_unwind(|| first_sync(&binary, dir, &case))
                .err()
                .map(panic_text)
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} clusters:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// kproxy's node settings for one family, with partial syncs as the agent writes them
/// (`-D`/`-I` in the dispatch chains).
fn node_settings(family: IpFamily) -> IptablesSettings {
    let (node_ip, pods) = match family {
        IpFamily::V4 => ("192.168.50.10", "10.244.0.0/16"),
        IpFamily::V6 => ("2001:db8:50::10", "fd00:244::/64"),
    };
    let mut settings = IptablesSettings::new(family, "node-0");
    settings.node_ip = Some(node_ip.parse().expect("node IP"));
    settings.local_detector = LocalDetector::Cidrs(vec![pods.parse().expect("pod CIDR")]);
    settings.random_fully = true;
    settings.incremental_dispatch = true;
    settings
}

/// Dual-stack service `svc-N` in five flavours: ClusterIP; NodePort TCP and UDP;
/// LoadBalancer with `externalTrafficPolicy: Local` and source ranges; ClientIP affinity
/// with external IPs; `internalTrafficPolicy: Local` without endpoints.
fn service(n: usize) -> String {
    let head = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{n}, namespace: ns}}\nspec:\n  \
         clusterIP: 10.96.1.{n}\n  clusterIPs: [10.96.1.{n}, \"fd00:96::{n:x}\"]\n  \
         ipFamilies: [IPv4, IPv6]\n"
    );
    let http = "{name: http, port: 80, protocol: TCP, targetPort: 8080";
    let flavour = match n % 5 {
        0 => format!("  ports: [{http}}}]\n"),
        1 => format!(
            "  type: NodePort\n  ports: [{http}, nodePort: {}}}, {{name: dns, port: 53, \
             protocol: UDP, nodePort: {}}}]\n",
            30000 + n,
            31000 + n
        ),
        2 => format!(
            "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {}\n  \
             loadBalancerSourceRanges: [198.51.100.0/24, \"2001:db8:1::/64\"]\n  \
             ports: [{http}, nodePort: {}}}]\nstatus: {{loadBalancer: {{ingress: [{{ip: \
             203.0.113.{n}}}, {{ip: \"2001:db8:ff::{n:x}\"}}]}}}}\n",
            32000 + n,
            30000 + n
        ),
        3 => format!(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: \
             300}}}}\n  externalIPs: [192.168.99.{n}, \"2001:db8:99::{n:x}\"]\n  \
             ports: [{http}}}]\n"
        ),
        _ => format!("  internalTrafficPolicy: Local\n  ports: [{http}}}]\n"),
    };
    format!("{head}{flavour}")
}

/// Service `svc-N`'s EndpointSlices, one per family, with endpoints `hosts` (odd ones on
/// this node).
fn slices(n: usize, hosts: &[usize]) -> String {
    [IpFamily::V4, IpFamily::V6]
        .map(|family| {
            let (address_type, suffix) = match family {
                IpFamily::V4 => ("IPv4", "ipv4"),
                IpFamily::V6 => ("IPv6", "ipv6"),
            };
            let endpoints: Vec<String> = hosts
                .iter()
                .map(|&h| {
                    let address = match family {
                        IpFamily::V4 => format!("10.244.{n}.{h}"),
                        IpFamily::V6 => format!("fd00:244::{n:x}:{h:x}"),
                    };
                    let node = 1 - h % 2;
                    format!(
                        "{{addresses: [\"{address}\"], conditions: {{ready: true}}, \
                         nodeName: node-{node}}}"
                    )
                })
                .collect();
            format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: \
                 svc-{n}-{suffix}, namespace: ns, labels: {{kubernetes.io/service-name: \
                 svc-{n}}}}}\naddressType: {address_type}\nports: [{{name: http, port: 8080, \
                 protocol: TCP}}, {{name: dns, port: 5353, protocol: UDP}}]\nendpoints: [{}]\n",
                endpoints.join(", ")
            )
        })
        .join("---\n")
}

/// Services 1..=count with their endpoints (none for the `internalTrafficPolicy` flavour).
fn dual_stack_cluster(count: usize) -> String {
    (1..=count)
        .map(|n| {
            if n % 5 == 4 {
                service(n)
            } else {
                format!("{}---\n{}", service(n), slices(n, &[1, 2, 3]))
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A deletion of service `n` and its slices.
fn service_deleted(n: usize) -> Vec<StoreEvent> {
    let object = |kind, name: String| {
        StoreEvent::Delete(ObjectRef {
            kind,
            namespace: "ns".into(),
            name,
        })
    };
    vec![
        object(ObjectKind::Service, format!("svc-{n}")),
        object(ObjectKind::EndpointSlice, format!("svc-{n}-ipv4")),
        object(ObjectKind::EndpointSlice, format!("svc-{n}-ipv6")),
    ]
}

/// Runs a dual-stack cluster of `count` services through both namespaces: the jumps, the
/// first (full) sync, then partial syncs (an endpoint moved, a service added, a service
/// removed, endpoints gone) and a forced full sync. `check` sees B's tables after each sync.
/// Returns the partial syncs' restore inputs.
fn cluster_syncs(pair: &Pair, count: usize, check: impl Fn(&str, &KernelState)) -> Vec<String> {
    let manifest = dual_stack_cluster(count);
    let mut renderers: Vec<Renderer> = [IpFamily::V4, IpFamily::V6]
        .map(|family| Renderer::new(node_settings(family), &manifest))
        .into();
    for renderer in &renderers {
        let family = renderer.family();
        let state = pair.write(
            family,
            &jumps_input(renderer.proxier.settings()),
            &format!("{family:?} jumps"),
        );
        check("jumps", &state);
    }
    let changes: [(&str, Vec<StoreEvent>); 4] = [
        ("endpoint moved", support::events(&slices(7, &[1, 2, 99]))),
        (
            "service added",
            support::events(&format!(
                "{}---\n{}",
                service(count + 1),
                slices(count + 1, &[1, 2])
            )),
        ),
        ("service removed", service_deleted(8)),
        ("endpoints gone", support::events(&slices(6, &[]))),
    ];
    let mut partial_inputs = Vec::new();
    for renderer in &mut renderers {
        let what = format!("{:?} first sync", renderer.family());
        renderer.sync_into(pair, &what);
        check(&what, &kernel_state(&pair.writer));
    }
    for (change, events) in changes {
        for renderer in &mut renderers {
            for event in events.clone() {
                renderer.store.apply(event);
            }
            let what = format!("{:?} {change}", renderer.family());
            partial_inputs.push(renderer.sync_into(pair, &what));
            check(&what, &kernel_state(&pair.writer));
        }
    }
    for renderer in &mut renderers {
        renderer.proxier.force_full_sync();
        let what = format!("{:?} forced full sync", renderer.family());
        renderer.sync_into(pair, &what);
        check(&what, &kernel_state(&pair.writer));
    }
    partial_inputs
}

#[test]
fn partial_syncs_into_a_full_table_program_what_iptables_restore_programs() {
    let Some(binary) = prerequisites("xtables_writer partial syncs") else {
        return;
    };
    let pair = Pair::new(&binary, "partial");
    let inputs = cluster_syncs(&pair, 50, |_, _| {});
    for needle in [
        "\n-D KUBE-SERVICES ",
        "\n-I KUBE-SERVICES 1 ",
        "\n-X KUBE-SVC-",
    ] {
        assert!(
            inputs.iter().any(|i| i.contains(needle)),
            "no partial sync had {needle:?}:\n{}",
            inputs.join("\n")
        );
    }
}

/// Foreign chains of both tables and families, with rule and policy counters.
fn foreign_input(family: IpFamily) -> String {
    let source = match family {
        IpFamily::V4 => "10.1.0.0/16",
        IpFamily::V6 => "fd00:1::/64",
    };
    format!(
        "*nat\n:FOREIGN - [0:0]\n[7:420] -A PREROUTING -j FOREIGN\n\
         [5:300] -A FOREIGN -s {source} -j ACCEPT\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [11:660]\n:FOREIGN - [0:0]\n[3:180] -A INPUT -j FOREIGN\n\
         [2:120] -A FOREIGN -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    )
}

#[test]
fn foreign_rules_keep_their_counters_through_kproxys_syncs() {
    let Some(binary) = prerequisites("xtables_writer foreign counters") else {
        return;
    };
    let pair = Pair::new(&binary, "foreign");
    for family in [IpFamily::V4, IpFamily::V6] {
        pair.foreign(family, &foreign_input(family));
    }
    cluster_syncs(&pair, 10, |what, state| {
        for family in [IpFamily::V4, IpFamily::V6] {
            let save = state.save(family);
            for kept in [
                "[7:420] -A PREROUTING -j FOREIGN",
                "[3:180] -A INPUT -j FOREIGN",
                ":INPUT ACCEPT [11:660]",
                "-p tcp -m tcp --dport 22 -j ACCEPT",
            ] {
                assert!(
                    save.contains(kept),
                    "{what}: {family:?} lost {kept:?}:\n{save}"
                );
            }
            assert!(save.contains("[5:300] -A FOREIGN -s "), "{what}:\n{save}");
            assert!(
                save.contains("[2:120] -A FOREIGN -p tcp"),
                "{what}:\n{save}"
            );
        }
    });
}

#[test]
fn input_the_writer_does_not_encode_or_the_kernel_refuses_ends_as_with_the_tool() {
    let Some(binary) = prerequisites("xtables_writer fallback") else {
        return;
    };
    let pair = Pair::new(&binary, "fallback");
    let family = IpFamily::V4;
    pair.write(family, &jumps_input(&node_settings(family)), "jumps");

    let log = "*filter\n:KUBE-X - [0:0]\n-A KUBE-X -j LOG --log-prefix x\nCOMMIT\n";
    let (restored, state) = pair.step(family, log, "a LOG rule");
    assert!(restored.ok(), "a LOG rule: {restored:?}");
    assert!(
        restored.stderr.contains("kproxy xtables-restore: ")
            && restored.stderr.contains(FALLBACK_NOTICE),
        "the fallback is not named: {restored:?}"
    );
    assert!(state
        .save(family)
        .contains("-A KUBE-X -j LOG --log-prefix x"));

    // The writer keeps the rule it cannot encode when it rewrites that chain's table.
    let around = "*filter\n:KUBE-Y - [0:0]\n-A KUBE-Y -j ACCEPT\n\
                  -I KUBE-X 1 -s 10.2.0.0/16 -j KUBE-Y\nCOMMIT\n";
    let state = pair.write(family, around, "rules around the LOG rule");
    assert!(state
        .save(family)
        .contains("-A KUBE-X -j LOG --log-prefix x"));

    let before = pair.states();
    let referenced = "*nat\n-X KUBE-SERVICES\nCOMMIT\n";
    let (restored, _) = pair.step(family, referenced, "a referenced chain deleted");
    assert!(!restored.ok(), "a referenced chain deleted: {restored:?}");
    assert!(
        pair.states() == before,
        "a refused restore changed the tables"
    );

    // The first table is committed before the second is refused, by both.
    let second = format!("*filter\n:KUBE-Z - [0:0]\nCOMMIT\n{referenced}");
    let (restored, state) = pair.step(family, &second, "refused in the second table");
    assert!(!restored.ok(), "refused in the second table: {restored:?}");
    assert!(state.save(family).contains(":KUBE-Z - [0:0]"));
}

#[test]
fn a_held_xtables_lock_makes_the_writer_give_up_with_status_4() {
    let Some(binary) = prerequisites("xtables_writer lock") else {
        return;
    };
    let pair = Pair::new(&binary, "lock");
    let family = IpFamily::V4;
    pair.write(family, &jumps_input(&node_settings(family)), "jumps");
    let before = pair.states();
    let input = "*nat\n:KUBE-LOCKED - [0:0]\n-A KUBE-LOCKED -j RETURN\nCOMMIT\n";
    {
        let _held = HeldLock::take(&pair.lock);
        let tool = || pair.restore_with_tool(family, input, 1);
        let writer = || pair.restore_with_writer(family, input, 1);
        let runs: [(&str, &dyn Fn() -> Restored); 2] = [
            ("iptables-legacy-restore", &tool),
            ("kproxy xtables-restore", &writer),
        ];
        for (who, run) in runs {
            let started = Instant::now();
            let restored = run();
            let waited = started.elapsed();
            assert_eq!(restored.code, Some(4), "{who}: {restored:?}");
            assert!(
                (Duration::from_millis(900)..Duration::from_secs(4)).contains(&waited),
                "{who} gave up after {waited:?}"
            );
        }
        assert!(pair.states() == before, "a restore got past the held lock");
    }
    let state = pair.write(family, input, "after the lock is released");
    assert!(state.save(family).contains(":KUBE-LOCKED - [0:0]"));
}
