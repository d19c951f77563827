//! Generic netlink framing: `kproxy-netlink`'s messages with a `genlmsghdr` (command,
//! version) as their family header. Pure.

pub(crate) use kproxy_netlink::{
    attrs, replies, Attr, Message as GenlMessage, Reply, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};

/// A request to generic netlink family `family` with command `cmd` of `version`.
pub(crate) fn genl_message(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> GenlMessage {
    GenlMessage::new(family, flags, seq, [cmd, version, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_and_version_lead_the_body() {
        let bytes = genl_message(0x22, NLM_F_REQUEST, 5, 7, 1).finish();
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[4..6], &0x22u16.to_ne_bytes());
        assert_eq!(&bytes[16..20], &[7, 1, 0, 0]);
    }
}
