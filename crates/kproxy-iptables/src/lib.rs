//! kproxy-iptables (placeholder)
