//! Parsing the words of one rule (everything after `-A CHAIN`) into matches and a target.

use crate::addr::IpNet;
use crate::match_modules;
use crate::matches::{Match, ProtocolSpec};
use crate::ruleset::Matches;
use crate::targets::{parse_target, Target};
use crate::text::TextSource;
use smallvec::SmallVec;
use std::borrow::Cow;

/// One `--option [values...]` of a match module or target, `negated` if `!` preceded it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionWord<'a> {
    pub negated: bool,
    pub name: &'a str,
    pub values: &'a [Cow<'a, str>],
}

/// One `-m MODULE` (or the protocol module `-p` implies) with the options given to it.
struct ModuleUse<'a> {
    name: &'a str,
    options: SmallVec<[OptionWord<'a>; 4]>,
}

/// Per-rule scratch lists are small; keeping them inline avoids allocating per rule.
type Modules<'a> = SmallVec<[ModuleUse<'a>; 4]>;

/// Parses the words of a rule. An `Err` is a structural problem (a missing argument, a
/// bad address); a module or target kproxy does not know becomes a reported
/// [`Match::Unknown`] or [`Target::Unknown`] instead.
///
/// `scratch` is a list to build the matches in; it is left empty, so that it can be
/// reused for the next rule without allocating.
pub(crate) fn parse_rule<'a>(
    words: &'a [Cow<'a, str>],
    source: &TextSource,
    scratch: &mut Matches,
) -> Result<(Box<[Match]>, Target), String> {
    scratch.clear();
    let matches = scratch;
    let mut modules: Modules<'a> = SmallVec::new();
    let mut protocol_module: Option<usize> = None;
    let mut negate = false;
    let mut i = 0;
    while i < words.len() {
        let word = &*words[i];
        i += 1;
        let mut arg = || -> Result<&'a str, String> {
            let value = words
                .get(i)
                .map(|w| &**w)
                .ok_or_else(|| format!("{word} needs an argument"))?;
            i += 1;
            Ok(value)
        };
        match word {
            "!" => {
                negate = true;
                continue;
            }
            "-s" | "--source" | "--src" => matches.push(Match::Source {
                negated: negate,
                net: net(arg()?)?,
            }),
            "-d" | "--destination" | "--dst" => matches.push(Match::Destination {
                negated: negate,
                net: net(arg()?)?,
            }),
            "-p" | "--protocol" => {
                let name = arg()?;
                matches.push(Match::Protocol {
                    negated: negate,
                    protocol: protocol(name)?,
                });
                if let Some(module) = protocol_module_name(name) {
                    protocol_module = Some(modules.len());
                    modules.push(ModuleUse {
                        name: module,
                        options: SmallVec::new(),
                    });
                }
            }
            "-i" | "--in-interface" => matches.push(Match::InInterface {
                negated: negate,
                name: arg()?.into(),
            }),
            "-o" | "--out-interface" => matches.push(Match::OutInterface {
                negated: negate,
                name: arg()?.into(),
            }),
            "-f" | "--fragment" => matches.push(Match::Fragment { negated: negate }),
            "-c" | "--set-counters" => {
                arg()?;
                arg()?;
            }
            "-m" | "--match" => {
                modules.push(ModuleUse {
                    name: arg()?,
                    options: SmallVec::new(),
                });
            }
            "-j" | "--jump" => {
                let name = arg()?;
                let options = target_options(&words[i..])?;
                finish_modules(&modules, source, matches);
                return Ok((exact(matches), parse_target(name, &options, source)));
            }
            "-g" | "--goto" => {
                let name = arg()?;
                if let Some(extra) = words.get(i) {
                    return Err(format!("unexpected {extra:?} after -g {name}"));
                }
                finish_modules(&modules, source, matches);
                return Ok((exact(matches), Target::Goto(source.text(name))));
            }
            option if option.starts_with("--") => {
                i = module_option(words, i, negate, &mut modules, protocol_module)?;
            }
            other => return Err(format!("unexpected word {other:?}")),
        }
        negate = false;
    }
    finish_modules(&modules, source, matches);
    Ok((exact(matches), Target::None))
}

/// Moves the matches into a slice of exactly their number.
fn exact(matches: &mut Matches) -> Box<[Match]> {
    let mut stored = Vec::with_capacity(matches.len());
    stored.append(matches);
    stored.into_boxed_slice()
}

/// Reads `--option [!] values...` starting with the option at `i - 1`, attaches it to the
/// module that takes it, and returns the index of the next word.
fn module_option<'a>(
    words: &'a [Cow<'a, str>],
    mut i: usize,
    mut negated: bool,
    modules: &mut [ModuleUse<'a>],
    protocol_module: Option<usize>,
) -> Result<usize, String> {
    let name = &*words[i - 1];
    if words.get(i).is_some_and(|w| w == "!") {
        negated = true;
        i += 1;
    }
    let start = i;
    while i < words.len() && !starts_option(&words[i]) {
        i += 1;
    }
    let option = OptionWord {
        negated,
        name,
        values: &words[start..i],
    };
    let current = modules.len().checked_sub(1);
    let owner = [current, protocol_module]
        .into_iter()
        .flatten()
        .find(|&m| match_modules::accepts(modules[m].name, name) != Some(false))
        .or(current)
        .ok_or_else(|| format!("option {name} outside any match module"))?;
    modules[owner].options.push(option);
    Ok(i)
}

fn starts_option(word: &str) -> bool {
    word == "!"
        || (word.len() > 1
            && word.starts_with('-')
            && !word[1..].starts_with(|c: char| c.is_ascii_digit()))
}

fn target_options<'a>(words: &'a [Cow<'a, str>]) -> Result<SmallVec<[OptionWord<'a>; 4]>, String> {
    let mut options = SmallVec::new();
    let mut i = 0;
    while i < words.len() {
        let name = &*words[i];
        if !name.starts_with("--") {
            return Err(format!("unexpected word {name:?} in target options"));
        }
        i += 1;
        let start = i;
        while i < words.len() && !starts_option(&words[i]) {
            i += 1;
        }
        options.push(OptionWord {
            negated: false,
            name,
            values: &words[start..i],
        });
    }
    Ok(options)
}

fn finish_modules(modules: &[ModuleUse<'_>], source: &TextSource, matches: &mut Matches) {
    for module in modules {
        match_modules::build(module.name, &module.options, source, matches);
    }
}

fn net(text: &str) -> Result<IpNet, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn protocol(name: &str) -> Result<ProtocolSpec, String> {
    let number = match name.to_ascii_lowercase().as_str() {
        "all" | "0" => return Ok(ProtocolSpec::All),
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" | "icmp6" => 58,
        "udplite" => 136,
        "esp" => 50,
        "ah" => 51,
        "gre" => 47,
        "ipip" | "ipencap" => 4,
        other => other
            .parse::<u8>()
            .map_err(|_| format!("unknown protocol {name:?}"))?,
    };
    Ok(ProtocolSpec::Number(number))
}

fn protocol_module_name(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some("tcp"),
        "udp" | "17" => Some("udp"),
        "sctp" | "132" => Some("sctp"),
        "udplite" | "136" => Some("udplite"),
        "icmp" | "1" => Some("icmp"),
        "ipv6-icmp" | "icmpv6" | "icmp6" | "58" => Some("icmp6"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matches::{Direction, PortRange, RecentAction};
    use crate::tokenizer::tokenize_into;

    fn source() -> TextSource {
        TextSource::new(std::sync::Arc::default())
    }

    fn parse(text: &str) -> (Vec<Match>, Target) {
        let mut words = Vec::new();
        tokenize_into(text, &mut words).unwrap();
        let words: Vec<Cow<'static, str>> = words
            .into_iter()
            .map(|w| Cow::Owned(w.into_owned()))
            .collect();
        let (matches, target) = parse_rule(&words, &source(), &mut Vec::new()).unwrap();
        (matches.into_vec(), target)
    }

    #[test]
    fn save_and_restore_argument_orders_give_the_same_matches() {
        let (save, t1) = parse(
            r#"-d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-X"#,
        );
        let (restore, t2) = parse(
            r#"-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-X"#,
        );
        assert_eq!(t1, Target::Jump("KUBE-SVC-X".into()));
        assert_eq!(t1, t2);
        for m in [&save, &restore] {
            assert!(m.contains(&Match::Port {
                negated: false,
                direction: Direction::Destination,
                range: PortRange { from: 80, to: 80 }
            }));
            assert!(m.contains(&Match::Comment("ns1/svc1:p80 cluster IP".into())));
        }
    }

    #[test]
    fn negation_before_and_after_option() {
        let (m, _) =
            parse("! -s 10.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP");
        assert!(matches!(m[0], Match::Source { negated: true, .. }));
        assert!(matches!(m[1], Match::CtState { negated: true, .. }));
        let (m, _) = parse("-p tcp --dport ! 80 -j DROP");
        assert!(matches!(m[1], Match::Port { negated: true, .. }));
    }

    #[test]
    fn recent_and_unknown_module() {
        let (m, t) = parse("-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-SEP-A");
        assert_eq!(
            m,
            [Match::Recent {
                negated: false,
                name: "KUBE-SEP-A".into(),
                action: RecentAction::Check
            }]
        );
        assert_eq!(t, Target::Jump("KUBE-SEP-A".into()));
        let (m, _) = parse("-m frobnicate --level 3 -j ACCEPT");
        assert!(matches!(&m[0], Match::Unknown { module, .. } if &**module == "frobnicate"));
    }

    #[test]
    fn structural_errors() {
        let mut words = Vec::new();
        tokenize_into("-s", &mut words).unwrap();
        assert!(parse_rule(&words, &source(), &mut Vec::new()).is_err());
        tokenize_into("-s not-an-ip -j ACCEPT", &mut words).unwrap();
        assert!(parse_rule(&words, &source(), &mut Vec::new()).is_err());
    }
}
