//! A minimal HTTP/1 server for the health, metrics and health-check node port endpoints:
//! a handler maps (method, path) to a [`Reply`]; nothing is read from request bodies.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A reply with a body of the given type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 404 for paths the server does not serve.
    pub fn not_found() -> Self {
        Reply::new(404, "text/plain; charset=utf-8", "404 page not found\n")
    }

    /// 405 for methods other than GET.
    pub fn method_not_allowed() -> Self {
        let mut reply = Reply::new(405, "text/plain; charset=utf-8", "method not allowed\n");
        reply.headers.push(("Allow", "GET".into()));
        reply
    }
}

/// Maps a request's method and path to a reply.
pub type Handler = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Ok(value) = reply.content_type.parse() {
        headers.insert(hyper::header::CONTENT_TYPE, value);
    }
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    response
}

/// Serves connections from `listener` until the returned task is aborted.
pub fn spawn_server(listener: TcpListener, handler: Handler) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors or similar: pause instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let reply = handler(request.method(), request.uri().path());
                    async move { Ok::<_, Infallible>(to_response(reply)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Binds a TCP listener for a server, from a std listener (already bound).
pub fn listener_from_std(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}
