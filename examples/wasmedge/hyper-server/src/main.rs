//! A hyper server the way WasmEdge's examples write one (wasmedge_hyper_demo): tokio_wasi's
//! listener, one task per connection, hyper_wasi's HTTP/1 connection driver.
//!
//! `GET /` answers `hello from hyper\n`; `POST /echo` answers the request body; anything
//! else 404. It listens on 0.0.0.0:$PORT (8080 by default), as such apps do: under wedge
//! that lands on 127.0.0.1 unless 0.0.0.0 is granted.

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

async fn handle(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::new(Body::from("hello from hyper\n")),
        (&Method::POST, "/echo") => Response::new(request.into_body()),
        _ => {
            let mut not_found = Response::new(Body::from("not found\n"));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            not_found
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn(async move {
            if let Err(error) = Http::new().serve_connection(stream, service_fn(handle)).await {
                eprintln!("connection failed: {error}");
            }
        });
    }
}
