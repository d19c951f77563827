//! Turns the options of one `-m MODULE` (or the protocol module implied by `-p`) into
//! [`Match`] conditions.

use crate::matches::{
    ct_state, AddrType, Direction, Match, MultiportSide, PacketType, PortRange, RecentAction,
};
use crate::rule::OptionWord;
use crate::ruleset::Matches;
use crate::targets::parse_mark;
use crate::text::Text;
use crate::text::TextSource;

const PORT_OPTIONS: &[&str] = &["--dport", "--destination-port", "--sport", "--source-port"];

/// Modules whose options kproxy reads but whose outcome the tracer cannot decide.
const UNDECIDABLE: &[&str] = &[
    "physdev",
    "socket",
    "mac",
    "owner",
    "cgroup",
    "devgroup",
    "rpfilter",
    "policy",
    "length",
    "ttl",
    "hl",
    "tos",
    "dscp",
    "helper",
    "tcpmss",
    "ecn",
    "string",
    "u32",
    "bpf",
    "ipvs",
    "time",
    "quota",
    "connbytes",
    "connlimit",
    "cpu",
    "realm",
    "esp",
    "ah",
    "frag",
    "hbh",
    "dst",
    "rt",
    "ipv6header",
    "mh",
    "icmp",
    "icmp6",
    "icmpv6",
];

/// Modules that always match for a single packet.
const ALWAYS: &[&str] = &["nfacct", "limit", "hashlimit"];

/// Whether `module` takes `option`; `None` if kproxy does not know the module.
pub(crate) fn accepts(module: &str, option: &str) -> Option<bool> {
    let known: &[&str] = match module {
        "tcp" => &[
            "--dport",
            "--destination-port",
            "--sport",
            "--source-port",
            "--syn",
            "--tcp-flags",
            "--tcp-option",
        ],
        "udp" | "udplite" => PORT_OPTIONS,
        "sctp" => &[
            "--dport",
            "--destination-port",
            "--sport",
            "--source-port",
            "--chunk-types",
        ],
        "multiport" => &[
            "--dports",
            "--destination-ports",
            "--sports",
            "--source-ports",
            "--ports",
        ],
        "comment" => &["--comment"],
        "addrtype" => &[
            "--src-type",
            "--dst-type",
            "--limit-iface-in",
            "--limit-iface-out",
        ],
        "conntrack" => &[
            "--ctstate",
            "--ctstatus",
            "--ctproto",
            "--ctorigsrc",
            "--ctorigdst",
            "--ctreplsrc",
            "--ctrepldst",
            "--ctorigsrcport",
            "--ctorigdstport",
            "--ctreplsrcport",
            "--ctrepldstport",
            "--ctexpire",
            "--ctdir",
        ],
        "state" => &["--state"],
        "mark" | "connmark" => &["--mark"],
        "statistic" => &["--mode", "--probability", "--every", "--packet"],
        "recent" => &[
            "--set",
            "--rcheck",
            "--update",
            "--remove",
            "--name",
            "--seconds",
            "--reap",
            "--hitcount",
            "--rttl",
            "--rsource",
            "--rdest",
            "--mask",
        ],
        "set" => &[
            "--match-set",
            "--return-nomatch",
            "--update-counters",
            "--update-subcounters",
            "--packets-eq",
            "--packets-lt",
            "--packets-gt",
            "--bytes-eq",
            "--bytes-lt",
            "--bytes-gt",
        ],
        "pkttype" => &["--pkt-type"],
        "iprange" => &["--src-range", "--dst-range"],
        m if ALWAYS.contains(&m) || UNDECIDABLE.contains(&m) => return Some(true),
        _ => return None,
    };
    Some(known.contains(&option))
}

/// Builds the conditions of one module use, appending them to `out`.
pub(crate) fn build(module: &str, opts: &[OptionWord<'_>], source: &TextSource, out: &mut Matches) {
    let before = out.len();
    if let Err(reason) = build_known(module, opts, source, out) {
        out.truncate(before);
        out.push(Match::Unknown {
            module: module.into(),
            reason: reason.into(),
        });
    }
}

fn build_known(
    module: &str,
    opts: &[OptionWord<'_>],
    source: &TextSource,
    out: &mut Matches,
) -> Result<(), String> {
    if accepts(module, "").is_none() {
        return Err(format!("unknown match module{}", describe(opts)));
    }
    if let Some(bad) = opts.iter().find(|o| accepts(module, o.name) == Some(false)) {
        return Err(format!("unknown option {}", bad.name));
    }
    match module {
        "statistic" => out.push(statistic(opts)?),
        "recent" => out.push(recent(opts, source)?),
        // The common modules first, before the lists below are searched.
        "comment" | "tcp" | "udp" | "sctp" | "udplite" | "multiport" | "addrtype" | "conntrack"
        | "state" | "mark" | "connmark" | "set" | "pkttype" | "iprange" => {
            singles(module, opts, source, out)?
        }
        _ if ALWAYS.contains(&module) => out.push(Match::Always {
            module: module.into(),
        }),
        _ if UNDECIDABLE.contains(&module) => out.push(Match::Undecidable {
            module: module.into(),
            detail: describe(opts).trim_start().into(),
        }),
        _ => singles(module, opts, source, out)?,
    }
    Ok(())
}

/// The conditions of a module whose options each stand alone.
fn singles(
    module: &str,
    opts: &[OptionWord<'_>],
    source: &TextSource,
    out: &mut Matches,
) -> Result<(), String> {
    for opt in opts {
        if let Some(m) = single(module, opt, source)? {
            out.push(m);
        }
    }
    Ok(())
}

/// The conditions of modules whose options each stand alone.
fn single(
    module: &str,
    opt: &OptionWord<'_>,
    source: &TextSource,
) -> Result<Option<Match>, String> {
    let negated = opt.negated;
    let first = || {
        opt.values
            .first()
            .map(|v| &**v)
            .ok_or_else(|| format!("{} needs a value", opt.name))
    };
    let m = match opt.name {
        "--comment" => Match::Comment(source.text(first()?)),
        "--dport" | "--destination-port" | "--sport" | "--source-port" => Match::Port {
            negated,
            direction: match opt.name {
                "--sport" | "--source-port" => Direction::Source,
                _ => Direction::Destination,
            },
            range: port_range(first()?)?,
        },
        "--syn" => Match::TcpFlags {
            negated,
            mask: 0x17,
            set: 0x02,
        },
        "--tcp-flags" => tcp_flags(opt)?,
        "--tcp-option" | "--chunk-types" => Match::Undecidable {
            module: module.into(),
            detail: describe(std::slice::from_ref(opt)).trim_start().into(),
        },
        "--dports" | "--destination-ports" | "--sports" | "--source-ports" | "--ports" => {
            Match::Multiport {
                negated,
                side: match opt.name {
                    "--ports" => MultiportSide::Either,
                    "--sports" | "--source-ports" => MultiportSide::Source,
                    _ => MultiportSide::Destination,
                },
                ranges: first()?
                    .split(',')
                    .map(port_range)
                    .collect::<Result<_, _>>()?,
            }
        }
        "--src-type" | "--dst-type" => Match::AddrType {
            negated,
            direction: if opt.name == "--src-type" {
                Direction::Source
            } else {
                Direction::Destination
            },
            types: first()?.split(',').map(addr_type).collect(),
        },
        "--limit-iface-in" | "--limit-iface-out" | "--return-nomatch" => return Ok(None),
        "--ctstate" | "--state" => Match::CtState {
            negated,
            states: ct_states(first()?)?,
        },
        "--ctstatus" => Match::CtStatus {
            negated,
            none_listed: first()?.split(',').any(|s| s == "NONE"),
        },
        "--mark" => {
            let (value, mask) =
                parse_mark(first()?).ok_or_else(|| format!("cannot read mark {:?}", first()))?;
            let mask = mask.unwrap_or(u32::MAX);
            if module == "connmark" {
                Match::ConnMark {
                    negated,
                    value,
                    mask,
                }
            } else {
                Match::Mark {
                    negated,
                    value,
                    mask,
                }
            }
        }
        "--match-set" => set(opt)?,
        "--pkt-type" => Match::PktType {
            negated,
            kind: match first()? {
                "unicast" | "host" => PacketType::Unicast,
                "broadcast" => PacketType::Broadcast,
                "multicast" => PacketType::Multicast,
                other => return Err(format!("unknown packet type {other}")),
            },
        },
        "--src-range" | "--dst-range" => ip_range(opt)?,
        _ => Match::Undecidable {
            module: module.into(),
            detail: describe(std::slice::from_ref(opt)).trim_start().into(),
        },
    };
    Ok(Some(m))
}

fn describe(opts: &[OptionWord<'_>]) -> String {
    let mut text = String::new();
    for opt in opts {
        text.push(' ');
        if opt.negated {
            text.push_str("! ");
        }
        text.push_str(opt.name);
        for v in opt.values {
            text.push(' ');
            text.push_str(v);
        }
    }
    text
}

fn port_range(text: &str) -> Result<PortRange, String> {
    let bad = || format!("cannot read port {text:?}");
    let (from, to) = text.split_once(':').unwrap_or((text, text));
    let from = if from.is_empty() { Ok(0) } else { from.parse() };
    let to = if to.is_empty() {
        Ok(u16::MAX)
    } else {
        to.parse()
    };
    Ok(PortRange {
        from: from.map_err(|_| bad())?,
        to: to.map_err(|_| bad())?,
    })
}

fn addr_type(name: &str) -> AddrType {
    match name {
        "LOCAL" => AddrType::Local,
        "UNICAST" => AddrType::Unicast,
        "BROADCAST" => AddrType::Broadcast,
        "MULTICAST" => AddrType::Multicast,
        _ => AddrType::Other,
    }
}

fn ct_states(list: &str) -> Result<u8, String> {
    list.split(',').try_fold(0, |bits, name| {
        let bit = match name {
            "NEW" => ct_state::NEW,
            "ESTABLISHED" => ct_state::ESTABLISHED,
            "RELATED" => ct_state::RELATED,
            "INVALID" => ct_state::INVALID,
            "UNTRACKED" => ct_state::UNTRACKED,
            "SNAT" => ct_state::SNAT,
            "DNAT" => ct_state::DNAT,
            other => return Err(format!("unknown conntrack state {other}")),
        };
        Ok(bits | bit)
    })
}

fn tcp_flags(opt: &OptionWord<'_>) -> Result<Match, String> {
    let flags = |text: &str| -> Result<u8, String> {
        text.split(',').try_fold(0u8, |bits, name| {
            let bit = match name {
                "FIN" => 0x01,
                "SYN" => 0x02,
                "RST" => 0x04,
                "PSH" => 0x08,
                "ACK" => 0x10,
                "URG" => 0x20,
                "ALL" => 0x3f,
                "NONE" => 0,
                other => return Err(format!("unknown TCP flag {other}")),
            };
            Ok(bits | bit)
        })
    };
    match opt.values {
        [mask, set] => Ok(Match::TcpFlags {
            negated: opt.negated,
            mask: flags(mask)?,
            set: flags(set)?,
        }),
        _ => Err("--tcp-flags needs MASK and SET".to_string()),
    }
}

fn set(opt: &OptionWord<'_>) -> Result<Match, String> {
    match opt.values {
        [name, flags] => Ok(Match::Set {
            negated: opt.negated,
            name: (**name).into(),
            directions: flags
                .split(',')
                .map(|f| match f {
                    "src" => Ok(Direction::Source),
                    "dst" => Ok(Direction::Destination),
                    other => Err(format!("unknown set flag {other}")),
                })
                .collect::<Result<_, _>>()?,
        }),
        _ => Err("--match-set needs NAME and FLAGS".to_string()),
    }
}

fn ip_range(opt: &OptionWord<'_>) -> Result<Match, String> {
    let text = opt.values.first().ok_or("iprange needs a value")?;
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| s.parse().map_err(|_| format!("cannot read address {s:?}"));
    Ok(Match::IpRange {
        negated: opt.negated,
        direction: if opt.name == "--src-range" {
            Direction::Source
        } else {
            Direction::Destination
        },
        from: parse(from)?,
        to: parse(to)?,
    })
}

fn statistic(opts: &[OptionWord<'_>]) -> Result<Match, String> {
    let negated = opts.iter().any(|o| o.negated);
    let value = |name: &str| {
        opts.iter()
            .find(|o| o.name == name)
            .and_then(|o| o.values.first())
    };
    let mode = value("--mode").map(|v| &**v);
    let probability = match mode {
        Some("random") => value("--probability")
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or("random mode needs --probability between 0 and 1")?,
        Some("nth") => {
            let every = value("--every")
                .and_then(|e| e.parse::<u32>().ok())
                .filter(|e| *e > 0)
                .ok_or("nth mode needs --every")?;
            1.0 / f64::from(every)
        }
        _ => return Err("statistic needs --mode random or nth".to_string()),
    };
    Ok(Match::Statistic {
        negated,
        probability,
    })
}

fn recent(opts: &[OptionWord<'_>], source: &TextSource) -> Result<Match, String> {
    let mut action = None;
    let mut negated = false;
    let mut name = Text::from("DEFAULT");
    for opt in opts {
        negated |= opt.negated;
        match opt.name {
            "--set" => action = Some(RecentAction::Set),
            "--rcheck" | "--update" => action = Some(RecentAction::Check),
            "--remove" => action = Some(RecentAction::Remove),
            "--name" => {
                name = opt
                    .values
                    .first()
                    .map(|v| source.text(v))
                    .ok_or("--name needs a value")?
            }
            _ => {}
        }
    }
    Ok(Match::Recent {
        negated,
        name,
        action: action.ok_or("recent needs --set, --rcheck, --update or --remove")?,
    })
}
