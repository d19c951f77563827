//! kproxy-nftables (placeholder)
