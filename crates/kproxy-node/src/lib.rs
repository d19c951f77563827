//! kproxy-node (placeholder)
