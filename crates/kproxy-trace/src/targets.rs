//! Rule targets (`-j`/`-g` and their options).

use crate::rule::OptionWord;
use crate::text::{Text, TextSource};

/// A change of a 32-bit mark: `new = (old & !mask) ^ value` (the `--set-xmark` form every
/// other MARK option reduces to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkOp {
    /// Bits to xor in.
    pub value: u32,
    /// Bits cleared first.
    pub mask: u32,
}

impl MarkOp {
    /// Applies the change to `old`.
    pub fn apply(self, old: u32) -> u32 {
        (old & !self.mask) ^ self.value
    }
}

/// What `CONNMARK` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnmarkOp {
    /// Change the connection mark like MARK changes the packet mark.
    Change(MarkOp),
    /// `--save-mark`: `ctmark = (ctmark & !ctmask) ^ (mark & nfmask)`.
    Save { nfmask: u32, ctmask: u32 },
    /// `--restore-mark`: `mark = (mark & !nfmask) ^ (ctmark & ctmask)`.
    Restore { nfmask: u32, ctmask: u32 },
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// No `-j`: the rule only counts (or only has side effects like `recent --set`).
    None,
    /// `-j CHAIN`: call a user chain.
    Jump(Text),
    /// `-g CHAIN`: continue in a user chain; its end returns to our caller.
    Goto(Text),
    /// `-j RETURN`
    Return,
    /// `-j ACCEPT`
    Accept,
    /// `-j DROP`
    Drop,
    /// `-j REJECT [--reject-with TYPE]`
    Reject {
        /// The ICMP error or TCP reset sent back.
        with: Option<Box<str>>,
    },
    /// `-j DNAT --to-destination ADDR[:PORT]`
    Dnat {
        /// The new destination as written.
        to: Text,
    },
    /// `-j SNAT --to-source ADDR[:PORT]`
    Snat {
        /// The new source as written.
        to: Box<str>,
    },
    /// `-j MASQUERADE [--to-ports P] [--random-fully]`
    Masquerade {
        /// Port range for the new source port.
        to_ports: Option<Box<str>>,
        /// Whether `--random-fully` is set.
        random_fully: bool,
    },
    /// `-j REDIRECT [--to-ports P]`: DNAT to the node itself.
    Redirect {
        /// The new destination port.
        to_ports: Option<Box<str>>,
    },
    /// `-j MARK`
    Mark(MarkOp),
    /// `-j CONNMARK`
    Connmark(ConnmarkOp),
    /// `-j NOTRACK` or `-j CT --notrack`: the connection is not tracked (no NAT).
    NoTrack,
    /// A known target with no effect on the traced path (`LOG`, `NFLOG`, `TCPMSS`, `CT`, ...).
    Passive {
        /// The target's name.
        name: Box<str>,
    },
    /// A known target that hands the packet elsewhere (`NFQUEUE`, `TPROXY`); the trace stops.
    Handoff {
        /// The target's name.
        name: Box<str>,
    },
    /// A target kproxy does not know, or a known one with options it does not know.
    Unknown {
        /// The target's name.
        name: Box<str>,
        /// Why it is not understood.
        reason: Box<str>,
    },
}

const PASSIVE: &[&str] = &[
    "LOG",
    "NFLOG",
    "ULOG",
    "TRACE",
    "AUDIT",
    "TCPMSS",
    "CHECKSUM",
    "CT",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "SET",
    "SECMARK",
    "CONNSECMARK",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "TEE",
    "SYNPROXY",
    "NETMAP",
];
const HANDOFF: &[&str] = &["NFQUEUE", "QUEUE", "TPROXY"];

/// Builds the target named by `-j NAME` with its options. A name that is not a known
/// target is taken as a chain; the parser checks the chain exists when the table ends.
pub(crate) fn parse_target(name: &str, opts: &[OptionWord<'_>], source: &TextSource) -> Target {
    let result = match name {
        "RETURN" | "ACCEPT" | "DROP" => no_options(name, opts).map(|()| match name {
            "RETURN" => Target::Return,
            "ACCEPT" => Target::Accept,
            _ => Target::Drop,
        }),
        "REJECT" => only(opts, &["--reject-with"]).map(|()| Target::Reject {
            with: value(opts, "--reject-with"),
        }),
        "DNAT" => only(opts, &["--to-destination", "--random", "--persistent"]).and_then(|()| {
            opts.iter()
                .find(|o| o.name == "--to-destination")
                .and_then(|o| o.values.first())
                .map(|to| Target::Dnat {
                    to: source.text(to),
                })
                .ok_or_else(|| "missing --to-destination".to_string())
        }),
        "SNAT" => only(
            opts,
            &["--to-source", "--random", "--random-fully", "--persistent"],
        )
        .and_then(|()| {
            value(opts, "--to-source")
                .map(|to| Target::Snat { to })
                .ok_or_else(|| "missing --to-source".to_string())
        }),
        "MASQUERADE" => {
            only(opts, &["--to-ports", "--random", "--random-fully"]).map(|()| Target::Masquerade {
                to_ports: value(opts, "--to-ports"),
                random_fully: opts.iter().any(|o| o.name == "--random-fully"),
            })
        }
        "REDIRECT" => only(opts, &["--to-ports", "--random"]).map(|()| Target::Redirect {
            to_ports: value(opts, "--to-ports"),
        }),
        "MARK" => single_mark_op(opts).map(Target::Mark),
        "CONNMARK" => connmark(opts).map(Target::Connmark),
        "NOTRACK" => no_options(name, opts).map(|()| Target::NoTrack),
        "CT" if opts.iter().any(|o| o.name == "--notrack") => Ok(Target::NoTrack),
        _ if PASSIVE.contains(&name) => Ok(Target::Passive { name: name.into() }),
        _ if HANDOFF.contains(&name) => Ok(Target::Handoff { name: name.into() }),
        _ if opts.is_empty() => Ok(Target::Jump(source.text(name))),
        _ => Err("unknown target with options".to_string()),
    };
    result.unwrap_or_else(|reason| Target::Unknown {
        name: name.into(),
        reason: reason.into(),
    })
}

fn no_options(name: &str, opts: &[OptionWord<'_>]) -> Result<(), String> {
    match opts.first() {
        None => Ok(()),
        Some(o) => Err(format!("{name} takes no option, got {}", o.name)),
    }
}

fn only(opts: &[OptionWord<'_>], allowed: &[&str]) -> Result<(), String> {
    match opts.iter().find(|o| !allowed.contains(&o.name)) {
        None => Ok(()),
        Some(o) => Err(format!("unknown option {}", o.name)),
    }
}

fn value(opts: &[OptionWord<'_>], name: &str) -> Option<Box<str>> {
    opts.iter()
        .find(|o| o.name == name)
        .and_then(|o| o.values.first())
        .map(|v| Box::from(&**v))
}

/// Parses `0x4000`, `16384` or `0x4000/0xffff` into value and optional mask.
pub(crate) fn parse_mark(text: &str) -> Option<(u32, Option<u32>)> {
    let (value, mask) = match text.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (text, None),
    };
    let mask = match mask {
        Some(m) => Some(parse_u32(m)?),
        None => None,
    };
    Some((parse_u32(value)?, mask))
}

fn parse_u32(text: &str) -> Option<u32> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Reads one `--set-xmark`/`--set-mark`/`--or-mark`/`--and-mark`/`--xor-mark` option.
fn mark_op(opt: &OptionWord<'_>) -> Option<MarkOp> {
    let (value, mask) = parse_mark(opt.values.first()?)?;
    let full = u32::MAX;
    Some(match opt.name {
        "--set-xmark" => MarkOp {
            value,
            mask: mask.unwrap_or(full),
        },
        "--set-mark" => MarkOp {
            value,
            mask: mask.unwrap_or(full) | value,
        },
        "--or-mark" => MarkOp { value, mask: value },
        "--and-mark" => MarkOp {
            value: 0,
            mask: !value,
        },
        "--xor-mark" => MarkOp { value, mask: 0 },
        _ => return None,
    })
}

fn single_mark_op(opts: &[OptionWord<'_>]) -> Result<MarkOp, String> {
    match opts {
        [opt] => mark_op(opt).ok_or_else(|| format!("cannot read {} option", opt.name)),
        _ => Err("MARK needs exactly one mark option".to_string()),
    }
}

fn connmark(opts: &[OptionWord<'_>]) -> Result<ConnmarkOp, String> {
    let mask_of = |names: &[&str]| -> Result<u32, String> {
        match opts.iter().find(|o| names.contains(&o.name)) {
            None => Ok(u32::MAX),
            Some(o) => o
                .values
                .first()
                .and_then(|v| parse_u32(v))
                .ok_or_else(|| format!("cannot read {}", o.name)),
        }
    };
    let nfmask = mask_of(&["--nfmask", "--mask"])?;
    let ctmask = mask_of(&["--ctmask", "--mask"])?;
    for opt in opts {
        match opt.name {
            "--save-mark" => return Ok(ConnmarkOp::Save { nfmask, ctmask }),
            "--restore-mark" => return Ok(ConnmarkOp::Restore { nfmask, ctmask }),
            "--nfmask" | "--ctmask" | "--mask" => {}
            _ => {
                return mark_op(opt)
                    .map(ConnmarkOp::Change)
                    .ok_or_else(|| format!("cannot read {}", opt.name))
            }
        }
    }
    Err("CONNMARK without an action".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, value: &str) -> MarkOp {
        let values = [std::borrow::Cow::Borrowed(value)];
        mark_op(&OptionWord {
            negated: false,
            name,
            values: &values,
        })
        .unwrap()
    }

    #[test]
    fn mark_forms_reduce_to_xmark() {
        assert_eq!(op("--or-mark", "0x4000").apply(0x1), 0x4001);
        assert_eq!(op("--xor-mark", "0x4000").apply(0x4001), 0x1);
        assert_eq!(op("--set-xmark", "0x4000/0x4000").apply(0x1), 0x4001);
        assert_eq!(op("--set-xmark", "0x4000/0x0").apply(0x4001), 0x1);
        assert_eq!(op("--set-mark", "0x10").apply(0xff), 0x10);
        assert_eq!(op("--set-mark", "0x10/0xf0").apply(0xff), 0x1f);
        assert_eq!(op("--and-mark", "0xf").apply(0xff), 0xf);
    }
}
