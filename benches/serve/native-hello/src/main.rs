//! native-hello: the native baseline of the serve benchmark (benches/serve/run.sh).
//!
//! A plain hyper 1.x HTTP/1.1 server on tokio's multi-thread runtime that answers every
//! request like target/guests/http-hello.wasm does: 200, `content-type: text/plain`,
//! body `hello from wedge\n`.
//!
//! Usage: native-hello ADDR   (e.g. 127.0.0.1:8080); prints `listening on http://ADDR/` when ready.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"hello from wedge\n")))
        .expect("static response is valid");
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: native-hello ADDR (e.g. 127.0.0.1:8080)")?;
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            if let Err(e) = http1::Builder::new()
                .serve_connection(io, service_fn(hello))
                .await
            {
                eprintln!("native-hello: connection error: {e}");
            }
        });
    }
}
