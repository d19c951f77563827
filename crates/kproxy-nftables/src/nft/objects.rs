//! nftables objects as plain typed values: a table's chains, rules, sets, maps and
//! elements. Rendering to `nft` syntax lives in [`super::transaction`].

use std::fmt;

/// An nftables address family kproxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `ip` (IPv4).
    Ip,
    /// `ip6` (IPv6).
    Ip6,
}

impl Family {
    /// The keyword in nft syntax.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// Parses the keyword.
    pub fn from_keyword(text: &str) -> Option<Family> {
        match text {
            "ip" => Some(Family::Ip),
            "ip6" => Some(Family::Ip6),
            _ => None,
        }
    }

    /// The address data type (`ipv4_addr` / `ipv6_addr`).
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::Ip => "ipv4_addr",
            Family::Ip6 => "ipv6_addr",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A table: the family and name are carried by the transaction, so only the comment
/// is a property of the object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The table comment.
    pub comment: Option<String>,
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`.
    Filter,
    /// `nat`.
    Nat,
}

impl ChainType {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

impl Hook {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    /// Parses the keyword.
    pub fn from_keyword(text: &str) -> Option<Hook> {
        [
            Hook::Prerouting,
            Hook::Input,
            Hook::Forward,
            Hook::Output,
            Hook::Postrouting,
        ]
        .into_iter()
        .find(|h| h.keyword() == text)
    }
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// The chain type.
    pub kind: ChainType,
    /// The hook.
    pub hook: Hook,
    /// The numeric priority.
    pub priority: i32,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The name.
    pub name: String,
    /// Type, hook and priority for base chains.
    pub base: Option<BaseChain>,
    /// The comment.
    pub comment: Option<String>,
}

impl Chain {
    /// A regular chain without comment.
    pub fn regular(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            comment: None,
        }
    }
}

/// A rule appended to a chain. The body is nft expression syntax built by
/// [`crate::render::expr`] from validated values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain it belongs to.
    pub chain: String,
    /// The match and statement text.
    pub body: String,
    /// The comment.
    pub comment: Option<String>,
}

/// A set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The name.
    pub name: String,
    /// The element type (`ipv4_addr`, or a concatenation `a . b`).
    pub key_type: String,
    /// Flags (`dynamic`, `timeout`, `interval`).
    pub flags: Vec<String>,
    /// Default element timeout in seconds.
    pub timeout: Option<u32>,
    /// The comment.
    pub comment: Option<String>,
}

/// A map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// The name.
    pub name: String,
    /// The key type (a concatenation `a . b . c`).
    pub key_type: String,
    /// The value type (`verdict`).
    pub value_type: String,
    /// Flags (`interval`).
    pub flags: Vec<String>,
    /// The comment.
    pub comment: Option<String>,
}

/// An element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element {
    /// The set or map it belongs to.
    pub container: String,
    /// The key, components joined with ` . `.
    pub key: String,
    /// The element comment.
    pub comment: Option<String>,
    /// The value for map elements (`goto chain`, `drop`).
    pub value: Option<String>,
}

/// Any object a transaction can operate on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// The table.
    Table(Table),
    /// A chain.
    Chain(Chain),
    /// A rule.
    Rule(Rule),
    /// A set.
    Set(Set),
    /// A map.
    Map(Map),
    /// An element.
    Element(Element),
}

impl Object {
    /// The object-type keyword (`table`, `chain`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Object::Table(_) => "table",
            Object::Chain(_) => "chain",
            Object::Rule(_) => "rule",
            Object::Set(_) => "set",
            Object::Map(_) => "map",
            Object::Element(_) => "element",
        }
    }
}
