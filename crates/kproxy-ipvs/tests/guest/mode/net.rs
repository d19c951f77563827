//! Network namespaces for the end-to-end tests: backends that name themselves, and a
//! client that connects from its own namespace.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

pub fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-ec", script])
        .status()
        .expect("run sh");
    assert!(status.success(), "failed: {script}");
}

/// Namespace `name` behind veth `veth` with `{prefix}.1` on the host side and `{prefix}.2`
/// inside, routed through the host.
pub fn namespace(name: &str, veth: &str, prefix: &str) {
    sh(&format!(
        "ip netns add {name}
         ip link add {veth} type veth peer name eth0 netns {name}
         ip addr add {prefix}.1/24 dev {veth}; ip link set {veth} up
         ip -n {name} addr add {prefix}.2/24 dev eth0
         ip -n {name} link set lo up; ip -n {name} link set eth0 up
         ip -n {name} route add default via {prefix}.1"
    ));
}

/// Moves the calling thread (and processes it starts) into namespace `name`.
pub fn enter(name: &str) {
    let ns = File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd; it affects only the calling thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}");
}

/// A TCP server on port 8080 in namespace `name`: it writes `name`, then waits for the
/// client to close.
pub fn serve(name: &'static str) {
    let (ready, bound) = mpsc::channel();
    std::thread::spawn(move || {
        enter(name);
        let listener = TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
        ready.send(()).expect("signal ready");
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = writeln!(conn, "{name}");
                let _ = conn.read(&mut [0u8; 1]);
            });
        }
    });
    bound.recv().expect("backend bound");
}

/// Connects to `addr` from namespace `client`; returns the backend's name and the open
/// connection.
pub fn connect_from(client: &'static str, addr: SocketAddr) -> (String, TcpStream) {
    std::thread::spawn(move || {
        enter(client);
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr} from {client}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut line = String::new();
        BufReader::new(conn.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("read the backend's name");
        (line.trim().to_string(), conn)
    })
    .join()
    .expect("client thread")
}

/// Closes a connection with a reset, so IPVS forgets it after its short CLOSE timeout.
pub fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: SO_LINGER with a valid `linger` on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(conn);
}
