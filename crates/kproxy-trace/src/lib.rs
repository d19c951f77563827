//! kproxy-trace (placeholder)
