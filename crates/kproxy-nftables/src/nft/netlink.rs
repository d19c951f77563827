//! Reading nf_tables state over netlink where the `nft` tool is too slow: `nft` fetches
//! every chain and set of every table (and the elements of anonymous sets) before it
//! lists even one chain, which takes seconds once the table holds 100,000 chains. A
//! rule dump filtered by table and chain costs the kernel one hash lookup; a chain dump
//! carries names only (iptables-nft's `iptables-save` parses every rule to list them). The
//! requests and the reply classification are pure; [`chain_rule_count`] and
//! [`table_chain_names`] do the I/O.

use super::objects::Family;
use kproxy_netlink::{Message, Socket, NLM_F_DUMP, NLM_F_REQUEST};

/// `NFNL_SUBSYS_NFTABLES`.
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWCHAIN`: a chain (also what a chain dump answers with).
const NFT_MSG_NEWCHAIN: u16 = 3;
/// `NFT_MSG_GETCHAIN`.
const NFT_MSG_GETCHAIN: u16 = 4;
/// `NFTA_CHAIN_TABLE`.
const NFTA_CHAIN_TABLE: u16 = 1;
/// `NFTA_CHAIN_NAME`.
const NFTA_CHAIN_NAME: u16 = 3;
/// `NFT_MSG_NEWRULE`: a rule (also what a rule dump answers with).
const NFT_MSG_NEWRULE: u16 = 6;
/// `NFT_MSG_GETRULE`.
const NFT_MSG_GETRULE: u16 = 7;
/// `NFTA_RULE_TABLE`.
const NFTA_RULE_TABLE: u16 = 1;
/// `NFTA_RULE_CHAIN`.
const NFTA_RULE_CHAIN: u16 = 2;

/// The nfnetlink address family (`NFPROTO_IPV4` / `NFPROTO_IPV6`).
pub fn nfproto(family: Family) -> u8 {
    match family {
        Family::Ip => 2,
        Family::Ip6 => 10,
    }
}

/// The message type of an nf_tables command.
pub(crate) fn nft_type(command: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | command
}

/// The request dumping the rules of `family table chain` only.
pub fn rule_dump_request(family: Family, table: &str, chain: &str, seq: u32) -> Vec<u8> {
    let mut m = Message::nfnetlink(
        nft_type(NFT_MSG_GETRULE),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        nfproto(family),
    );
    m.put_str(NFTA_RULE_TABLE, table)
        .put_str(NFTA_RULE_CHAIN, chain);
    m.finish()
}

/// Whether a dump reply of type `ty` is a rule.
pub fn is_rule_reply(ty: u16) -> bool {
    ty == nft_type(NFT_MSG_NEWRULE)
}

/// How many rules `family table chain` holds, asked over a netlink socket in the calling
/// thread's network namespace. A missing table or chain holds none.
pub fn chain_rule_count(
    family: Family,
    table: &str,
    chain: &str,
) -> Result<usize, kproxy_netlink::Error> {
    let mut socket = Socket::open(libc::NETLINK_NETFILTER)?;
    let seq = socket.seq();
    let mut rules = 0;
    let dumped = socket.dump(
        &rule_dump_request(family, table, chain, seq),
        seq,
        |ty, _, _| rules += usize::from(is_rule_reply(ty)),
    );
    match dumped {
        Err(kproxy_netlink::Error::Kernel { errno }) if errno == libc::ENOENT => Ok(0),
        Err(e) => Err(e),
        Ok(()) => Ok(rules),
    }
}

/// The request dumping every chain of `family` (the kernel does not filter a chain dump by
/// table).
pub fn chain_dump_request(family: Family, seq: u32) -> Vec<u8> {
    Message::nfnetlink(
        nft_type(NFT_MSG_GETCHAIN),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        nfproto(family),
    )
    .finish()
}

/// The name of the chain a dump reply of type `ty` describes, when it is a chain of
/// `table`.
pub fn chain_of_table<'a>(
    ty: u16,
    attrs: &'a [u8],
    table: &str,
) -> Result<Option<&'a str>, kproxy_netlink::Error> {
    if ty != nft_type(NFT_MSG_NEWCHAIN) {
        return Ok(None);
    }
    let mut in_table = false;
    let mut name = None;
    for attr in kproxy_netlink::attrs(attrs)? {
        match attr.ty {
            NFTA_CHAIN_TABLE => in_table = attr.str()? == table,
            NFTA_CHAIN_NAME => name = Some(attr.str()?),
            _ => {}
        }
    }
    Ok(name.filter(|_| in_table))
}

/// The names of the chains of `family table`, asked over a netlink socket in the calling
/// thread's network namespace. A missing table has none.
pub fn table_chain_names(
    family: Family,
    table: &str,
) -> Result<Vec<String>, kproxy_netlink::Error> {
    let mut socket = Socket::open(libc::NETLINK_NETFILTER)?;
    let seq = socket.seq();
    let mut names = Vec::new();
    let mut malformed = None;
    socket.dump(
        &chain_dump_request(family, seq),
        seq,
        |ty, _, attrs| match chain_of_table(ty, attrs, table) {
            Ok(Some(name)) => names.push(name.to_string()),
            Ok(None) => {}
            Err(e) => malformed = Some(e),
        },
    )?;
    match malformed {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_dump_names_family_table_and_chain() {
        let bytes = rule_dump_request(Family::Ip6, "kube-proxy", "nat-prerouting", 9);
        let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
        assert_eq!(ty, 0x0a07);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(
            u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            9
        );
        assert_eq!(&bytes[16..20], &[10, 0, 0, 0]);
        let attrs = kproxy_netlink::attrs(&bytes[20..]).expect("attributes");
        assert_eq!(attrs.len(), 2);
        assert_eq!((attrs[0].ty, attrs[0].payload), (1, &b"kube-proxy\0"[..]));
        assert_eq!(
            (attrs[1].ty, attrs[1].payload),
            (2, &b"nat-prerouting\0"[..])
        );
        assert_eq!(
            u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
            bytes.len()
        );
    }

    #[test]
    fn chain_dump_replies_name_the_chains_of_one_table() {
        let request = chain_dump_request(Family::Ip, 4);
        assert_eq!(u16::from_ne_bytes([request[4], request[5]]), 0x0a04);
        assert_eq!(&request[16..20], &[2, 0, 0, 0]);
        let reply = |table: &str| {
            let mut m = Message::nfnetlink(0x0a03, 0, 1, 2);
            m.put_str(NFTA_CHAIN_TABLE, table)
                .put_u32(2, 7)
                .put_str(NFTA_CHAIN_NAME, "KUBE-SVC-X");
            m.finish()[20..].to_vec()
        };
        let nat = reply("nat");
        assert_eq!(
            chain_of_table(0x0a03, &nat, "nat").ok(),
            Some(Some("KUBE-SVC-X"))
        );
        assert_eq!(
            chain_of_table(0x0a03, &reply("filter"), "nat").ok(),
            Some(None)
        );
        assert_eq!(chain_of_table(0x0a06, &nat, "nat").ok(), Some(None));
        assert!(chain_of_table(0x0a03, &[9, 0, 1, 0, 0, 0], "nat").is_err());
    }

    #[test]
    fn only_rule_messages_are_counted() {
        assert!(is_rule_reply(0x0a06));
        assert!(!is_rule_reply(0x0a03));
        assert!(!is_rule_reply(0x0106));
    }
}
