//! A reqwest_wasi client: GET each URL given; prints each status and body.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for url in std::env::args().skip(1) {
        let response = reqwest::get(&url).await?;
        println!("GET {url} -> {}", response.status());
        println!("{}", response.text().await?.trim_end());
    }
    Ok(())
}
