//! The kproxy binary.
fn main() {}
