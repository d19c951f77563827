//! Network namespaces for pods and a client, TCP servers that name themselves, and
//! connections made from inside a namespace. Namespaces are entered per thread (`setns`
//! changes only the calling thread), so the process itself stays in the node's namespace.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::checks::Failure;
use crate::cluster::POD_PORT;

/// Runs `script` with `sh -e`; its output is shown on failure.
pub fn sh(script: &str) -> Result<String, Failure> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .map_err(|e| format!("running sh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            script.trim(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespace `name` behind veth `veth`: `{prefix}.1/24` on the node's side, `{prefix}.2`
/// inside with a default route through the node.
pub fn namespace(name: &str, veth: &str, prefix: &str) -> Result<(), Failure> {
    sh(&format!(
        "ip netns add {name}
         ip link add {veth} type veth peer name eth0 netns {name}
         ip addr add {prefix}.1/24 dev {veth}; ip link set {veth} up
         ip -n {name} addr add {prefix}.2/24 dev eth0
         ip -n {name} link set lo up; ip -n {name} link set eth0 up
         ip -n {name} route add default via {prefix}.1"
    ))
    .map(drop)
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) -> Result<(), Failure> {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
    // SAFETY: setns on a namespace fd we own; it affects only the calling thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setns {name}: {}", std::io::Error::last_os_error()))
    }
}

/// A TCP server on [`POD_PORT`] in namespace `name`, on its own thread: each connection
/// gets `name` and a newline, then is held until the client closes it.
pub fn serve(name: &str) -> Result<(), Failure> {
    let (ready, bound) = mpsc::channel();
    let name = name.to_string();
    std::thread::spawn(move || {
        let listener = enter(&name).and_then(|()| {
            TcpListener::bind(("0.0.0.0", POD_PORT)).map_err(|e| format!("bind in {name}: {e}"))
        });
        let listener = match listener {
            Ok(listener) => {
                let _ = ready.send(Ok(()));
                listener
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        for conn in listener.incoming().flatten() {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = writeln!(conn, "{name}");
                let _ = conn.read(&mut [0u8; 1]);
            });
        }
    });
    bound
        .recv()
        .map_err(|_| "the server thread died".to_string())?
}

/// Connects to `to` from namespace `client`; returns the name the backend sent and the
/// open connection.
pub fn connect_from(client: &str, to: SocketAddr) -> Result<(String, TcpStream), Failure> {
    let client = client.to_string();
    std::thread::spawn(move || {
        enter(&client)?;
        let conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect to {to} from {client}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| format!("read timeout: {e}"))?;
        let mut line = String::new();
        BufReader::new(&conn)
            .read_line(&mut line)
            .map_err(|e| format!("reading the backend's name from {to}: {e}"))?;
        Ok((line.trim().to_string(), conn))
    })
    .join()
    .map_err(|_| "the client thread panicked".to_string())?
}

/// Closes a connection with a reset, so IPVS forgets it within seconds (a closed one
/// would stay in TIME_WAIT for two minutes).
pub fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: SO_LINGER with a valid `linger` on a socket we own.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

/// How many of `n` connections to `to` from `client` landed on each backend; each is
/// reset after the backend's greeting.
pub fn spread(
    client: &str,
    to: SocketAddr,
    n: usize,
) -> Result<std::collections::BTreeMap<String, usize>, Failure> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (name, conn) = connect_from(client, to)?;
        reset(conn);
        *seen.entry(name).or_insert(0) += 1;
    }
    Ok(seen)
}
