//! kproxy-ipvs (placeholder)
