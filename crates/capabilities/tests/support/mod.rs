//! A small host for the socket tests: one core module instantiated with wasmtime-wasi's
//! preview 1 and WasmEdge's socket extension, linked as a host links them, run async on the
//! test's tokio runtime; and loopback servers for the guests to talk to.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wedge_capabilities::network::NetworkPolicy;
use wedge_capabilities::wasmedge_sockets::{self, SocketAbi, SocketLimits, WasmEdgeSockets};

/// Where scripts/build-guests.sh puts the guests (`WEDGE_GUESTS` overrides). A missing
/// guest fails the test with the command that builds it.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEDGE_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/guests"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "guest {} is missing: build the guests with scripts/build-guests.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// A guest module, compiled once per test binary.
pub fn module(name: &str) -> Module {
    static MODULES: OnceLock<Mutex<HashMap<String, Module>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    modules
        .entry(name.to_string())
        .or_insert_with(|| {
            Module::from_file(engine(), guest(name))
                .unwrap_or_else(|error| panic!("compile {name}: {error:?}"))
        })
        .clone()
}

pub struct State {
    wasi: WasiP1Ctx,
    sockets: WasmEdgeSockets,
}

pub struct Options {
    pub policy: Arc<NetworkPolicy>,
    pub limits: SocketLimits,
    pub deadline: Option<Instant>,
    pub env: Vec<(String, String)>,
}

/// Long enough for any guest here on a loaded 2-core machine; short enough that a guest
/// waiting for something that never comes fails its test instead of hanging it.
pub const GUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: Arc::new(NetworkPolicy::default()),
            limits: SocketLimits::default(),
            deadline: Some(Instant::now() + GUEST_DEADLINE),
            env: Vec::new(),
        }
    }
}

/// How a run ended and what it printed.
#[derive(Clone)]
pub struct Outcome {
    /// The exit status, or the trap's message.
    pub status: Result<i32, String>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn line(&self, index: usize) -> &str {
        self.stdout.lines().nth(index).unwrap_or("<no such line>")
    }

    /// The run exited 0 and printed exactly these lines.
    pub fn assert_lines(&self, expected: &[&str]) {
        let got: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(got, expected, "\n{self}");
        assert_eq!(self.status, Ok(0), "\n{self}");
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status: {:?}", self.status)?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        write!(f, "--- stderr\n{}", self.stderr)
    }
}

pub async fn run(name: &str, args: &[&str], policy: Arc<NetworkPolicy>) -> Outcome {
    run_with(
        name,
        args,
        Options {
            policy,
            ..Options::default()
        },
    )
    .await
}

pub async fn run_with(name: &str, args: &[&str], options: Options) -> Outcome {
    let module = module(name);
    let abi = SocketAbi::detect(&module).expect("the guest imports WasmEdge's socket extension");
    let mut linker: Linker<State> = Linker::new(engine());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
        .expect("link WASI");
    wasmedge_sockets::add_to_linker(&mut linker, &abi, |s: &mut State| {
        (&mut s.wasi, &mut s.sockets)
    })
    .expect("link the socket extension");
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut argv = vec![name.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&argv)
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    for (key, value) in &options.env {
        wasi.env(key, value);
    }
    let mut sockets = WasmEdgeSockets::new(options.policy, options.limits);
    if let Some(deadline) = options.deadline {
        sockets = sockets.with_deadline(deadline);
    }
    let mut store = Store::new(
        engine(),
        State {
            wasi: wasi.build_p1(),
            sockets,
        },
    );
    let status = async {
        let instance = linker
            .instantiate_async(&mut store, &module)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| format!("{e:?}"))?;
        match start.call_async(&mut store, ()).await {
            Ok(()) => Ok(0),
            Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(format!("{error:?}")),
            },
        }
    }
    .await;
    drop(store);
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}

/// A port nothing listens on (bound and released: the kernel hands it out again only after
/// cycling through the others).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A TCP server on loopback that echoes what each connection sends, as it arrives.
pub async fn tcp_echo() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo server");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A UDP server on loopback that sends each datagram back to its sender.
pub async fn udp_echo() -> u16 {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP echo");
    let port = socket.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    port
}

/// Connects to a guest's server on loopback (retrying until it listens, at most 30 s).
async fn connect(port: u16) -> tokio::net::TcpStream {
    let started = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => return stream,
            Err(error) if started.elapsed().as_secs() >= 30 => {
                panic!("the guest never listened on {port}: {error}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Sends `request`, closes the sending side, reads the reply to its end.
pub async fn tcp_request(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(port).await;
    stream.write_all(request).await.expect("send request");
    stream.shutdown().await.expect("close the sending side");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("read reply");
    reply
}

/// Sends `request`, reads `reply_len` bytes, then closes: the reply and the client's port.
pub async fn tcp_exchange(port: u16, request: &[u8], reply_len: usize) -> (Vec<u8>, u16) {
    let mut stream = connect(port).await;
    let client_port = stream.local_addr().expect("local addr").port();
    stream.write_all(request).await.expect("send request");
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).await.expect("read reply");
    drop(stream);
    (reply, client_port)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), retrying the connect
/// until the guest listens: the status code and the body.
pub async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = connect(port).await;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// An HTTP server on loopback for the guests' clients: `GET` answers `hello from the test
/// server\n`, `POST` echoes the body; every response closes its connection.
pub async fn http_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind HTTP server");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = if head.starts_with("post") {
                    request[head_end..].to_vec()
                } else {
                    b"hello from the test server\n".to_vec()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            });
        }
    });
    port
}

/// A TCP server on loopback that takes one connection and collects what it sends until it
/// closes.
pub async fn tcp_collect() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let port = listener.local_addr().expect("local addr").port();
    let collected = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut data = Vec::new();
        let _ = conn.read_to_end(&mut data).await;
        data
    });
    (port, collected)
}
