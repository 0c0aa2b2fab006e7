//! A hyper_wasi client (wasmedge_hyper_demo's): GET each URL given, then POST `hello` to
//! the last one's `/echo`; prints each status and body.

use hyper::{Body, Client, Method, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::new();
    let urls: Vec<String> = std::env::args().skip(1).collect();
    for url in &urls {
        let response = client.get(url.parse()?).await?;
        println!("GET {url} -> {}", response.status());
        let body = hyper::body::to_bytes(response.into_body()).await?;
        println!("{}", String::from_utf8_lossy(&body).trim_end());
    }
    if let Some(last) = urls.last() {
        let echo = format!("{}/echo", last.trim_end_matches('/'));
        let request = Request::builder()
            .method(Method::POST)
            .uri(&echo)
            .body(Body::from("hello"))?;
        let response = client.request(request).await?;
        println!("POST {echo} -> {}", response.status());
        let body = hyper::body::to_bytes(response.into_body()).await?;
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
