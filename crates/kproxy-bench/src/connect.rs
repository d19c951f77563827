//! The client side: sequential TCP connections from one namespace, each timed (connect,
//! request, response, close), to several targets in turn so that every target sees the
//! same machine load.

use crate::echo::{REQUEST, RESPONSE};
use crate::error::BenchError;
use crate::stats::{Sample, Summary};
use kproxy_lab::Netns;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a connect, and then the response, may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Connections before the timed ones (neighbour tables, caches), per target.
pub const WARMUP: usize = 20;

/// One connection's fate.
#[derive(Debug)]
enum Attempt {
    Answered(Sample),
    Failed(String),
}

/// What a series to one target came to, with the first failure seen (if any).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The figures.
    #[serde(flatten)]
    pub summary: Summary,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
}

/// The connections to one target so far.
#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    failed: usize,
    first_failure: Option<String>,
}

impl Tally {
    fn add(&mut self, attempt: Attempt) {
        match attempt {
            Attempt::Answered(sample) => self.samples.push(sample),
            Attempt::Failed(why) => {
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
        }
    }

    fn series(self) -> Series {
        Series {
            summary: Summary::of(&self.samples, self.failed),
            first_failure: self.first_failure,
        }
    }
}

/// Makes `connections` timed connections to each of `targets` from inside `netns`,
/// round-robin, after [`WARMUP`] untimed ones each; one series per target.
pub fn measure<const N: usize>(
    netns: &Netns,
    targets: [SocketAddr; N],
    connections: usize,
) -> Result<[Series; N], BenchError> {
    Ok(netns.enter(|| {
        for _ in 0..WARMUP {
            for target in targets {
                let _ = attempt(target);
            }
        }
        let mut tallies: [Tally; N] = std::array::from_fn(|_| Tally::default());
        for _ in 0..connections {
            for (target, tally) in targets.iter().zip(tallies.iter_mut()) {
                tally.add(attempt(*target));
            }
        }
        tallies.map(Tally::series)
    })?)
}

/// Whether one untimed connection to `target` from `netns` gets its answer.
pub fn answers(netns: &Netns, target: SocketAddr) -> Result<Result<(), String>, BenchError> {
    Ok(netns.enter(|| match attempt(target) {
        Attempt::Answered(_) => Ok(()),
        Attempt::Failed(why) => Err(why),
    })?)
}

fn attempt(target: SocketAddr) -> Attempt {
    match timed_exchange(target) {
        Ok(sample) => Attempt::Answered(sample),
        Err(why) => Attempt::Failed(format!("{target}: {why}")),
    }
}

fn timed_exchange(target: SocketAddr) -> Result<Sample, String> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| format!("socket: {e}"))?;
    let started = Instant::now();
    socket
        .connect_timeout(&SockAddr::from(target), TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    let connect = started.elapsed();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| format!("read timeout: {e}"))?;
    stream
        .write_all(REQUEST)
        .map_err(|e| format!("request: {e}"))?;
    let mut response = Vec::with_capacity(RESPONSE.len());
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("response: {e}"))?;
    drop(stream);
    let total = started.elapsed();
    if response != RESPONSE {
        return Err(format!("unexpected response {response:?}"));
    }
    Ok(Sample { connect, total })
}
