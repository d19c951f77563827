//! kproxy-model (placeholder)
