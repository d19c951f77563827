//! The nf_tables expressions kproxy's partial syncs use, as the kernel takes them: the
//! same expressions, registers and data `nft` 1.0.6 generates for the same rule text
//! (checked against `nft --debug=netlink` and by the kernel tests, which compare the
//! listings and the kernel's own dumps of both).

use kproxy_netlink::Message;

/// `NFTA_LIST_ELEM`.
pub const NFTA_LIST_ELEM: u16 = 1;
/// `NFTA_EXPR_NAME`.
const NFTA_EXPR_NAME: u16 = 1;
/// `NFTA_EXPR_DATA`.
const NFTA_EXPR_DATA: u16 = 2;
/// `NFTA_DATA_VALUE`.
const NFTA_DATA_VALUE: u16 = 1;
/// `NFTA_DATA_VERDICT`.
const NFTA_DATA_VERDICT: u16 = 2;
/// `NFTA_VERDICT_CODE`.
const NFTA_VERDICT_CODE: u16 = 1;
/// `NFTA_VERDICT_CHAIN`.
const NFTA_VERDICT_CHAIN: u16 = 2;

/// The verdict register.
pub const REG_VERDICT: u32 = 0;
/// The first data register.
pub const REG_1: u32 = 1;
/// The second data register.
pub const REG_2: u32 = 2;

/// Where a payload expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    Network = 1,
}

/// A verdict, as a rule's last statement or a map element's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `drop`.
    Drop,
    /// `accept`.
    Accept,
    /// `jump chain`.
    Jump(String),
    /// `goto chain`.
    Goto(String),
}

impl Verdict {
    /// The verdict code (`NF_DROP`, `NF_ACCEPT`, `NFT_JUMP`, `NFT_GOTO`).
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
        }
    }

    /// Writes `NFTA_DATA_VERDICT` (inside an `NFTA_*_DATA` nest).
    pub fn put(&self, m: &mut Message) {
        m.begin_nest(NFTA_DATA_VERDICT);
        m.put(NFTA_VERDICT_CODE, &self.code().to_be_bytes());
        if let Verdict::Jump(chain) | Verdict::Goto(chain) = self {
            m.put_str(NFTA_VERDICT_CHAIN, chain);
        }
        m.end_nest();
    }
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load `len` bytes at `offset` of a header into register 1.
    Payload {
        /// The header.
        base: Base,
        /// Offset in it.
        offset: u32,
        /// Bytes loaded.
        len: u32,
    },
    /// Register 1 `&` mask (`^ 0`), in place.
    Mask(Vec<u8>),
    /// Compare register 1 with `data`.
    Cmp {
        /// Not equal rather than equal.
        negate: bool,
        /// The value.
        data: Vec<u8>,
    },
    /// `meta l4proto` into register 1.
    MetaL4proto,
    /// `fib saddr type`: the route type of the source address into register 1.
    FibSaddrType,
    /// Load `data` into register `reg`.
    Value {
        /// The register.
        reg: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Set the verdict.
    Verdict(Verdict),
    /// DNAT to the address in register 1 and the port in register 2.
    Dnat {
        /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
        family: u8,
    },
    /// A random number below `modulus` into register 1.
    Numgen {
        /// The modulus.
        modulus: u32,
    },
    /// Look register 1 up in the batch's anonymous verdict map `set_id`.
    MapLookup {
        /// The map's name as the batch declares it (`__map%d`).
        set: String,
        /// The map's id in the batch.
        set_id: u32,
    },
}

/// `NFT_FIB_RESULT_ADDRTYPE`.
const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `NFTA_FIB_F_SADDR`.
const FIB_F_SADDR: u32 = 1;
/// `RTN_LOCAL`, as `fib ... type local` compares it (host byte order, 4 bytes).
pub const RTN_LOCAL: [u8; 4] = 2u32.to_ne_bytes();

/// `NF_NAT_RANGE_PROTO_SPECIFIED`: `nft` sets it when a port is given.
const NAT_PROTO_SPECIFIED: u32 = 0x2;

fn put_be32(m: &mut Message, ty: u16, value: u32) {
    m.put(ty, &value.to_be_bytes());
}

fn put_value(m: &mut Message, ty: u16, data: &[u8]) {
    m.begin_nest(ty);
    m.put(NFTA_DATA_VALUE, data);
    m.end_nest();
}

impl Expr {
    /// The expression's name (`NFTA_EXPR_NAME`).
    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Mask(_) => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::MetaL4proto => "meta",
            Expr::FibSaddrType => "fib",
            Expr::Value { .. } | Expr::Verdict(_) => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Numgen { .. } => "numgen",
            Expr::MapLookup { .. } => "lookup",
        }
    }

    /// Writes the expression as one `NFTA_LIST_ELEM` of a rule's expression list.
    pub fn put(&self, m: &mut Message) {
        m.begin_nest(NFTA_LIST_ELEM);
        m.put_str(NFTA_EXPR_NAME, self.name());
        m.begin_nest(NFTA_EXPR_DATA);
        self.put_data(m);
        m.end_nest();
        m.end_nest();
    }

    fn put_data(&self, m: &mut Message) {
        match self {
            Expr::Payload { base, offset, len } => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, *base as u32);
                put_be32(m, 3, *offset);
                put_be32(m, 4, *len);
            }
            Expr::Mask(mask) => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, REG_1);
                put_be32(m, 3, mask.len() as u32);
                put_value(m, 4, mask);
                put_value(m, 5, &vec![0; mask.len()]);
            }
            Expr::Cmp { negate, data } => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, u32::from(*negate));
                put_value(m, 3, data);
            }
            Expr::MetaL4proto => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, 16);
            }
            Expr::FibSaddrType => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, FIB_RESULT_ADDRTYPE);
                put_be32(m, 3, FIB_F_SADDR);
            }
            Expr::Value { reg, data } => {
                put_be32(m, 1, *reg);
                put_value(m, 2, data);
            }
            Expr::Verdict(verdict) => {
                put_be32(m, 1, REG_VERDICT);
                m.begin_nest(2);
                verdict.put(m);
                m.end_nest();
            }
            Expr::Dnat { family } => {
                put_be32(m, 1, 1);
                put_be32(m, 2, u32::from(*family));
                put_be32(m, 3, REG_1);
                put_be32(m, 5, REG_2);
                put_be32(m, 7, NAT_PROTO_SPECIFIED);
            }
            Expr::Numgen { modulus } => {
                put_be32(m, 1, REG_1);
                put_be32(m, 2, *modulus);
                put_be32(m, 3, 1);
                put_be32(m, 4, 0);
            }
            Expr::MapLookup { set, set_id } => {
                m.put_str(1, set);
                put_be32(m, 2, REG_1);
                put_be32(m, 3, REG_VERDICT);
                put_be32(m, 4, *set_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs_of(expr: &Expr) -> Vec<u8> {
        let mut m = Message::nfnetlink(0, 0, 0, 2);
        expr.put(&mut m);
        m.finish()[20..].to_vec()
    }

    #[test]
    fn a_jump_is_an_immediate_into_the_verdict_register() {
        let bytes = attrs_of(&Expr::Verdict(Verdict::Jump("m".into())));
        let elem = kproxy_netlink::attrs(&bytes).expect("list element");
        assert_eq!(elem[0].ty, NFTA_LIST_ELEM);
        let inner = kproxy_netlink::attrs(elem[0].payload).expect("name and data");
        assert_eq!(inner[0].payload, b"immediate\0");
        let data = kproxy_netlink::attrs(inner[1].payload).expect("immediate");
        assert_eq!((data[0].ty, data[0].payload), (1, &[0, 0, 0, 0][..]));
        let verdict = kproxy_netlink::attrs(data[1].payload).expect("data");
        let code = kproxy_netlink::attrs(verdict[0].payload).expect("verdict");
        assert_eq!(code[0].payload, (-3i32).to_be_bytes());
        assert_eq!(code[1].payload, b"m\0");
    }

    #[test]
    fn a_mask_xors_with_zeros_of_the_same_length() {
        let bytes = attrs_of(&Expr::Mask(vec![0xff, 0xfc, 0, 0]));
        let elem = kproxy_netlink::attrs(&bytes).expect("list element");
        let inner = kproxy_netlink::attrs(elem[0].payload).expect("name and data");
        let data = kproxy_netlink::attrs(inner[1].payload).expect("bitwise");
        assert_eq!(data[2].payload, 4u32.to_be_bytes());
        let xor = kproxy_netlink::attrs(data[4].payload).expect("xor");
        assert_eq!(xor[0].payload, [0, 0, 0, 0]);
    }
}
