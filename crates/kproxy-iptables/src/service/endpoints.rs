//! The `KUBE-SEP` chain and address text of each reachable endpoint of a port.

use crate::chain_name::EndpointChainHasher;
use kproxy_model::Endpoint;

/// The reachable endpoints of one port: each one's `KUBE-SEP` chain and `ip:port` text,
/// worked out once per render and kept in one buffer.
#[derive(Default)]
pub(super) struct EndpointChains {
    /// By the endpoint's position in the port's endpoints: where its chain and address
    /// are in `text`, if it is reachable.
    spans: Vec<Option<EndpointSpan>>,
    /// Chain names and addresses, one after the other.
    text: String,
}

/// `text[start..addr]` is the chain, `text[addr..end]` the address.
#[derive(Clone, Copy)]
struct EndpointSpan {
    start: usize,
    addr: usize,
    end: usize,
}

impl EndpointChains {
    /// Names the `reachable` endpoints, which are some of `all`.
    pub(super) fn fill(&mut self, service_key: &str, all: &[Endpoint], reachable: &[&Endpoint]) {
        self.spans.clear();
        self.spans.resize(all.len(), None);
        self.text.clear();
        let hasher = EndpointChainHasher::new(service_key);
        for ep in reachable {
            let Some(slot) = position(all, ep).and_then(|i| self.spans.get_mut(i)) else {
                continue;
            };
            let addr = ep.addr();
            let addr = addr.as_str();
            let start = self.text.len();
            hasher.push_chain(&mut self.text, addr);
            let addr_start = self.text.len();
            self.text.push_str(addr);
            *slot = Some(EndpointSpan {
                start,
                addr: addr_start,
                end: self.text.len(),
            });
        }
    }

    /// The chain and the `ip:port` text of a reachable endpoint of `all`.
    pub(super) fn get(&self, all: &[Endpoint], ep: &Endpoint) -> (&str, &str) {
        let span = position(all, ep).and_then(|i| self.spans.get(i).copied().flatten());
        let text = |from: usize, to: usize| self.text.get(from..to).unwrap_or_default();
        span.map_or(("", ""), |span| {
            (text(span.start, span.addr), text(span.addr, span.end))
        })
    }
}

/// Where `ep`, a reference into `all` (as endpoint selection hands them out), sits in it.
fn position(all: &[Endpoint], ep: &Endpoint) -> Option<usize> {
    let size = std::mem::size_of::<Endpoint>().max(1);
    let offset = (ep as *const Endpoint as usize).checked_sub(all.as_ptr() as usize)?;
    let index = offset / size;
    all.get(index)
        .filter(|found| std::ptr::eq(*found, ep))
        .map(|_| index)
}
