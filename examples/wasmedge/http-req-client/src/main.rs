//! An http_req_wasi client (blocking sockets, no async runtime): GET each URL given; prints
//! each status and body.

fn main() {
    for url in std::env::args().skip(1) {
        let mut body = Vec::new();
        match http_req::request::get(&url, &mut body) {
            Ok(response) => {
                println!("GET {url} -> {}", response.status_code());
                println!("{}", String::from_utf8_lossy(&body).trim_end());
            }
            Err(error) => {
                println!("GET {url} failed: {error}");
                std::process::exit(1);
            }
        }
    }
}
