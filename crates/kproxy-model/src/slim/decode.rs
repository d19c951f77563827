//! Decoding helpers shared by the slim object types: k8s-openapi's leniency (a missing or
//! null field is its default), addresses parsed once, and protocols read without keeping
//! their text.

use crate::addr::parse_ip_sloppy;
use crate::service::Protocol;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A field that may be missing or `null` reads as its type's default, as k8s-openapi
/// reads it. Use with `#[serde(default, deserialize_with = "or_default")]`.
pub(crate) fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// [`or_default`] for a list, kept without spare capacity: the store holds every
/// Service's lists, and serde grows a list of one entry to room for four.
pub(crate) fn list_or_default<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut list: Vec<T> = or_default(deserializer)?;
    list.shrink_to_fit();
    Ok(list)
}

/// An optional string kept as a shared `str` (node names repeat across endpoints, and the
/// store hands out one copy of each).
pub(crate) fn shared_str<'de, D>(deserializer: D) -> Result<Option<Arc<str>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.map(Arc::from))
}

/// One value of a string-keyed map (labels, annotations); the rest is dropped.
pub(crate) fn map_entry<'de, D>(deserializer: D, key: &str) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let map: Option<BTreeMap<String, String>> = Option::deserialize(deserializer)?;
    Ok(map.and_then(|mut map| map.remove(key)))
}

/// An IP address as written in an object: parsed (kube-proxy's sloppy parser, so leading
/// zeros are accepted) or, when it is not an address, the text, for the warning that
/// names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IpText {
    /// A valid address.
    Ip(IpAddr),
    /// Text that is not an address (`None`, empty, or garbage).
    Invalid(Box<str>),
}

impl IpText {
    /// Parses a text.
    pub fn parse(text: &str) -> IpText {
        match parse_ip_sloppy(text) {
            Some(ip) => IpText::Ip(ip),
            None => IpText::Invalid(text.into()),
        }
    }

    /// The address, if valid.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            IpText::Ip(ip) => Some(*ip),
            IpText::Invalid(_) => None,
        }
    }
}

impl fmt::Display for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpText::Ip(ip) => ip.fmt(f),
            IpText::Invalid(text) => f.write_str(text),
        }
    }
}

struct IpTextVisitor;

impl Visitor<'_> for IpTextVisitor {
    type Value = IpText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IpText, E> {
        Ok(IpText::parse(text))
    }
}

impl<'de> Deserialize<'de> for IpText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IpTextVisitor)
    }
}

struct FirstAddress;

impl<'de> Visitor<'de> for FirstAddress {
    type Value = Option<IpText>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of addresses")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element::<IpText>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(first)
    }
}

/// The first of a list of addresses (the only one kube-proxy uses); the others are
/// skipped without being kept.
pub(crate) fn first_address<'de, D>(deserializer: D) -> Result<Option<IpText>, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_option(FirstAddress)
}

/// A port's protocol as written: one kproxy knows, or the text of one it does not (the
/// port is skipped with a warning naming it). Unset is TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolField {
    /// TCP, UDP or SCTP.
    Known(Protocol),
    /// Anything else.
    Unknown(Box<str>),
}

impl Default for ProtocolField {
    fn default() -> Self {
        ProtocolField::Known(Protocol::Tcp)
    }
}

impl<'de> Deserialize<'de> for ProtocolField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(match text {
            None => ProtocolField::default(),
            Some(text) => match Protocol::from_api(&text) {
                Some(protocol) => ProtocolField::Known(protocol),
                None => ProtocolField::Unknown(text.into()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Addresses {
        #[serde(default, deserialize_with = "first_address")]
        addresses: Option<IpText>,
    }

    fn first(json: &str) -> Option<IpText> {
        serde_json::from_str::<Addresses>(json)
            .map(|a| a.addresses)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn addresses_keep_the_first_parsed_or_its_text() {
        assert_eq!(
            first(r#"{"addresses": ["010.0.0.1", "10.0.0.2"]}"#),
            Some(IpText::Ip([10, 0, 0, 1].into()))
        );
        assert_eq!(
            first(r#"{"addresses": ["pod"]}"#),
            Some(IpText::Invalid("pod".into()))
        );
        assert_eq!(first(r#"{"addresses": []}"#), None);
        assert_eq!(first(r#"{"addresses": null}"#), None);
        assert_eq!(first("{}"), None);
        assert!(serde_json::from_str::<Addresses>(r#"{"addresses": [1]}"#).is_err());
    }

    #[test]
    fn protocols_default_to_tcp_and_keep_unknown_text() {
        let read = |json: &str| serde_json::from_str::<ProtocolField>(json).ok();
        assert_eq!(read("null"), Some(ProtocolField::Known(Protocol::Tcp)));
        assert_eq!(read(r#""UDP""#), Some(ProtocolField::Known(Protocol::Udp)));
        assert_eq!(read(r#""tcp""#), Some(ProtocolField::Unknown("tcp".into())));
    }
}
