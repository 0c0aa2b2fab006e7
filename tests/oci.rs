//! `wedge push` and `wedge pull` against real registries: distribution 2.8 (Debian's
//! docker-registry) as `scripts/services.sh start registry` runs it (open, htpasswd, token
//! auth, TLS), with oras (PyPI, the tools venv of scripts/setup-toolchains.sh) as the
//! independent client on the other side. Every bad input the issue names has a test here.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::services::{service_url, unique};
use support::{Outcome, Wedge, guest, root};

/// Exit statuses of the registry commands (docs/cli.md).
const NOT_FOUND: i32 = 139;
const DENIED: i32 = 140;
const BAD_ARTIFACT: i32 = 141;
const REGISTRY_FAILED: i32 = 142;

fn registry() -> String {
    service_url("WEDGE_TEST_REGISTRY")
}

/// A repository no other test (or run) uses.
fn repo(registry: &str, name: &str) -> String {
    format!("{registry}/tests/{}", unique(name))
}

/// A wedge with a private cache and an empty docker config directory, so that nothing of
/// this machine's own docker login leaks into a test.
struct Client {
    wedge: Wedge,
    docker_config: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        Client {
            wedge: Wedge::new(),
            docker_config: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn command(&self) -> Command {
        let mut command = self.wedge.command();
        command
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("SSL_CERT_FILE");
        command
    }

    fn run(&self, args: &[&str]) -> Outcome {
        Outcome::from(self.command().args(args).output().expect("start wedge"))
    }

    /// Runs wedge with `stdin` as its standard input (a password).
    fn run_with_stdin(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Outcome {
        let mut command = self.command();
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start wedge");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write the password");
        Outcome::from(child.wait_with_output().expect("wait for wedge"))
    }

    /// The blobs wedge keeps for pulls.
    fn store(&self) -> PathBuf {
        self.wedge.cache_dir().join("oci")
    }

    /// `wedge pull REFERENCE -o OUT EXTRA...`.
    fn pull(&self, reference: &str, out: &Path, extra: &[&str]) -> Outcome {
        let mut args = vec!["pull", reference, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn push(&self, file: &Path, reference: &str) -> String {
        let outcome = self.run(&["push", file.to_str().unwrap(), reference]);
        outcome.expect_code(0);
        outcome.stdout.trim().to_string()
    }
}

/// A copy of a guest with a custom section that makes its bytes (and so its digest) unique:
/// tests that damage a blob in the registry's storage must not damage another test's.
fn unique_guest(name: &str, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(guest(name)).expect("read guest");
    let payload = unique("wedge-test-");
    let section_name = b"wedge-test";
    let mut body = vec![section_name.len() as u8];
    body.extend_from_slice(section_name);
    body.extend_from_slice(payload.as_bytes());
    bytes.push(0); // custom section id
    leb128(&mut bytes, body.len());
    bytes.extend_from_slice(&body);
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write guest copy");
    path
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    // Asked of the independent tool, not of wedge's own code.
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

// --- oras, the independent client ---------------------------------------------------------

fn oras(args: &[&str]) -> std::process::Output {
    let python = root().join("target/toolchains/tools-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-toolchains.sh (scripts/test.sh does), which installs oras",
        python.display()
    );
    Command::new(python)
        .arg(root().join("tests/oci/oras_client.py"))
        .args(args)
        .output()
        .expect("run oras_client.py")
}

fn oras_ok(args: &[&str]) -> Vec<u8> {
    let output = oras(args);
    assert!(
        output.status.success(),
        "oras {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `oras push REF` of a config and layers, each a file with its media type.
fn oras_push(reference: &str, config: (&Path, &str), layers: &[(&Path, &str)]) {
    let mut args = vec![
        "push".to_string(),
        reference.to_string(),
        format!("{}:{}", config.0.display(), config.1),
    ];
    args.extend(
        layers
            .iter()
            .map(|(path, media)| format!("{}:{media}", path.display())),
    );
    oras_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn oras_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&oras_ok(args)).expect("oras printed JSON")
}

// --- round trips and interoperability --------------------------------------------------------

#[test]
fn push_then_pull_gives_back_the_same_bytes_for_a_component_and_a_module() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    for name in ["http-hello.wasm", "hello.wasm"] {
        let reference = format!("{}:v1", repo(&registry(), "roundtrip"));
        let pinned = client.push(&guest(name), &reference);
        assert!(
            pinned.starts_with(&format!("{reference}@sha256:")),
            "push prints the pinned reference: {pinned}"
        );
        let out = dir.path().join(name);
        let pulled = client.pull(&reference, &out, &[]);
        pulled
            .expect_code(0)
            .stderr_has("downloaded")
            .stdout_has(&pinned);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(guest(name)).unwrap()
        );
        // Pulled again: the tag is resolved, everything else comes from the store.
        client
            .pull(&reference, &out, &[])
            .expect_code(0)
            .stderr_has("all from the cache");
        // By digest, with the blobs stored, no registry is needed at all: a port where
        // nothing listens stands for a registry that is down.
        let digest = pinned.rsplit_once('@').unwrap().1;
        let offline = format!("127.0.0.1:1/anything@{digest}");
        let again = dir.path().join("again.wasm");
        client
            .pull(&offline, &again, &[])
            .expect_code(0)
            .stderr_has("all from the cache");
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(guest(name)).unwrap()
        );
    }
}

#[test]
fn what_wedge_pushes_oras_reads_as_a_cncf_wasm_artifact() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.bin");
    std::fs::write(&model, b"not really weights").unwrap();
    let reference = format!("{}:1", repo(&registry(), "to-oras"));
    client
        .run(&[
            "push",
            guest("http-hello.wasm").to_str().unwrap(),
            &reference,
            "--file",
            &format!("{}:application/vnd.wedge.model.v1", model.display()),
        ])
        .expect_code(0)
        .stderr_has("wasip2");

    let manifest = oras_json(&["manifest", &reference]);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["artifactType"], "application/wasm");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "http-hello.wasm"
    );
    assert_eq!(layers[1]["mediaType"], "application/vnd.wedge.model.v1");

    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&oras_ok(&["blob", &reference, config_digest])).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert!(config["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(config["layerDigests"][0], layers[0]["digest"]);
    assert_eq!(config["layerDigests"][1], layers[1]["digest"]);
    assert_eq!(config["component"]["target"], "wasi:http/proxy@0.2.12");
    let exports = config["component"]["exports"].as_array().unwrap();
    assert!(
        exports
            .iter()
            .any(|e| e == "wasi:http/incoming-handler@0.2.12")
    );
    assert!(
        !config["component"]["imports"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let out = dir.path().join("pulled");
    oras_ok(&["pull", &reference, out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("http-hello.wasm")).unwrap(),
        std::fs::read(guest("http-hello.wasm")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("model.bin")).unwrap(),
        b"not really weights"
    );

    // And wedge writes the model back out with --files-dir; without it, it says so.
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let wasm = dir.path().join("f.wasm");
    client
        .pull(&reference, &wasm, &[])
        .expect_code(0)
        .stderr_has("model.bin (application/vnd.wedge.model.v1)")
        .stderr_has("--files-dir");
    client
        .run(&[
            "pull",
            &reference,
            "-o",
            wasm.to_str().unwrap(),
            "--files-dir",
            files.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        std::fs::read(files.join("model.bin")).unwrap(),
        b"not really weights"
    );
}

#[test]
fn what_oras_pushes_wedge_pulls() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(guest("hello.wasm")).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&wasm));
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [digest],
        })
        .to_string(),
    )
    .unwrap();
    let reference = format!("{}:1", repo(&registry(), "from-oras"));
    oras_push(
        &reference,
        (&config, "application/vnd.wasm.config.v0+json"),
        &[(&guest("hello.wasm"), "application/wasm")],
    );
    let out = dir.path().join("hello.wasm");
    client
        .pull(&reference, &out, &[])
        .expect_code(0)
        .stderr_has("wasip1");
    assert_eq!(std::fs::read(&out).unwrap(), wasm);
}

#[test]
fn a_large_blob_is_uploaded_in_chunks() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}:1", repo(&registry(), "chunked"));
    client
        .run(&[
            "push",
            guest("http-hello.wasm").to_str().unwrap(),
            &reference,
            "--chunk-size",
            "16KiB",
        ])
        .expect_code(0);
    let out = dir.path().join("pulled");
    oras_ok(&["pull", &reference, out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("http-hello.wasm")).unwrap(),
        std::fs::read(guest("http-hello.wasm")).unwrap()
    );
}

// --- what the registry does not have, or has wrong -------------------------------------------

#[test]
fn an_unknown_repository_or_tag_is_not_found() {
    let client = Client::new();
    let repository = repo(&registry(), "known");
    client.push(&guest("hello.wasm"), &format!("{repository}:1"));
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("x.wasm");

    let missing_tag = format!("{repository}:2");
    client
        .pull(&missing_tag, &out, &[])
        .expect_code(NOT_FOUND)
        .one_error_paragraph()
        .stderr_has("the tag `2` of")
        .stderr_has("the repository has the tags 1");
    let missing_repo = format!("{}:1", repo(&registry(), "never-pushed"));
    client
        .pull(&missing_repo, &out, &[])
        .expect_code(NOT_FOUND)
        .stderr_has("the repository tests/never-pushed")
        .stderr_has("NAME_UNKNOWN");
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn what_is_not_a_wasm_artifact_is_the_wrong_media_type() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let out = dir.path().join("x.wasm");
    let wasm_config = r#"{"created":"2024-01-01T00:00:00Z","architecture":"wasm","os":"wasip1","layerDigests":[]}"#;
    // (what it is, its config and the config's media type, what wedge must say)
    let cases = [
        (
            "an artifact with oras's default config and a text layer",
            "{}",
            "application/vnd.unknown.config.v1+json",
            [
                "has media type application/vnd.unknown.config.v1+json",
                "application/vnd.wasm.config.v0+json",
            ],
        ),
        (
            "a Wasm config but no Wasm layer",
            wasm_config,
            "application/vnd.wasm.config.v0+json",
            ["the layers of", "one layer of media type application/wasm"],
        ),
    ];
    for (what, config_text, config_type, says) in cases {
        let config = dir.path().join("config.json");
        std::fs::write(&config, config_text).unwrap();
        let reference = format!("{}:1", repo(&registry(), "not-wasm"));
        oras_push(&reference, (&config, config_type), &[(&text, "text/plain")]);
        let outcome = client.pull(&reference, &out, &[]);
        outcome.expect_code(BAD_ARTIFACT).one_error_paragraph();
        for needle in says {
            assert!(outcome.stderr.contains(needle), "{what}: {outcome:#?}");
        }
        assert!(!out.exists(), "{what}: nothing was written");
    }
}

/// The path of a blob in the open registry's storage (distribution's filesystem layout).
fn registry_blob(hex: &str) -> PathBuf {
    PathBuf::from(service_url("WEDGE_TEST_REGISTRY_DATA"))
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn a_damaged_blob_is_refused_and_nothing_is_stored() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = unique_guest("hello.wasm", dir.path());
    let wasm = std::fs::read(&wasm_path).unwrap();
    let hex = sha256_hex(&wasm);
    let reference = format!("{}:1", repo(&registry(), "damaged"));
    client.push(&wasm_path, &reference);

    // Same length, other bytes: bit rot, or a registry that serves something else.
    let stored = registry_blob(&hex);
    let mut damaged = wasm.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&stored, &damaged).expect("damage the registry's copy");
    let out = dir.path().join("x.wasm");
    client
        .pull(&reference, &out, &[])
        .expect_code(BAD_ARTIFACT)
        .one_error_paragraph()
        .stderr_has("does not match its digest")
        .stderr_has(&format!("asked for sha256:{hex}"))
        .stderr_has("nothing was stored");
    assert!(!out.exists(), "no output file");
    let kept = client.store().join("sha256").join(&hex);
    assert!(!kept.exists(), "the damaged blob is not in the store");
    let leftovers: Vec<_> = std::fs::read_dir(client.store().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );

    // Longer than its descriptor says: refused as well.
    let mut longer = wasm.clone();
    longer.extend_from_slice(b"trailing");
    std::fs::write(&stored, &longer).unwrap();
    client
        .pull(&reference, &out, &[])
        .expect_code(BAD_ARTIFACT)
        .stderr_has(&format!("should be {} bytes", wasm.len()));
    assert!(!out.exists());
    // Repaired, the same pull works.
    std::fs::write(&stored, &wasm).unwrap();
    client.pull(&reference, &out, &[]).expect_code(0);
    assert_eq!(std::fs::read(&out).unwrap(), wasm);
}

#[test]
fn an_artifact_over_the_size_limit_is_refused_before_it_is_downloaded() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}:1", repo(&registry(), "big"));
    client.push(&guest("http-hello.wasm"), &reference);
    let out = dir.path().join("x.wasm");
    client
        .run(&[
            "pull",
            &reference,
            "-o",
            out.to_str().unwrap(),
            "--max-size",
            "64KiB",
        ])
        .expect_code(BAD_ARTIFACT)
        .one_error_paragraph()
        .stderr_has("over the limit of 65536 bytes")
        .stderr_has("--max-size");
    assert!(!out.exists());
    // Only the manifest was fetched: no layer is in the store.
    let blobs: Vec<_> = std::fs::read_dir(client.store().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(
        blobs.iter().all(|&size| size < 4096),
        "only the manifest was downloaded: {blobs:?}"
    );
}

#[test]
fn a_registry_that_hangs_times_out() {
    // Accepts connections and never answers: the way a wedged registry or a black-holed
    // proxy looks from here.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let client = Client::new();
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    client
        .run(&[
            "pull",
            &format!("{address}/fns/hello:1"),
            "-o",
            out.path().join("x.wasm").to_str().unwrap(),
            "--timeout",
            "1s",
        ])
        .expect_code(REGISTRY_FAILED)
        .one_error_paragraph()
        .stderr_has("did not answer")
        .stderr_has("within 1s");
    // Not a speed claim: it ended on its timeout rather than hanging for ever.
    assert!(started.elapsed() < Duration::from_secs(20));
}

// --- authentication ---------------------------------------------------------------------------

fn registry_user() -> (String, String) {
    (
        service_url("WEDGE_TEST_REGISTRY_USER"),
        service_url("WEDGE_TEST_REGISTRY_PASSWORD"),
    )
}

/// Pushes to a registry that needs the test account: without credentials (refused, saying
/// how to give them), with a wrong password (refused), then with the right one. Returns the
/// reference pushed and the wrong password's outcome.
fn push_needing_credentials(client: &Client, registry: &str, name: &str) -> (String, Outcome) {
    let (user, password) = registry_user();
    let reference = format!("{}:1", repo(registry, name));
    let wasm = guest("hello.wasm");
    let wasm = wasm.to_str().unwrap();
    client
        .run(&["push", wasm, &reference])
        .expect_code(DENIED)
        .one_error_paragraph()
        .stderr_has("needs credentials")
        .stderr_has("--registry-user");
    let with_user = [
        "push",
        wasm,
        &reference,
        "--registry-user",
        &user,
        "--registry-password-stdin",
    ];
    let wrong = client.run_with_stdin(&with_user, "not-the-password\n", &[]);
    wrong.expect_code(DENIED).stderr_has("were not accepted");
    client
        .run_with_stdin(&with_user, &format!("{password}\n"), &[])
        .expect_code(0);
    (reference, wrong)
}

#[test]
fn basic_auth_takes_credentials_from_flags_or_docker_config() {
    let client = Client::new();
    let registry = service_url("WEDGE_TEST_REGISTRY_BASIC");
    let (user, password) = registry_user();
    let (reference, wrong_password) = push_needing_credentials(&client, &registry, "basic");
    wrong_password.stderr_has(&format!(
        "the credentials of user `{user}` were not accepted"
    ));

    // The same from docker's config.json, as `docker login` writes it.
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("x.wasm");
    let auth = base64_encode(format!("{user}:{password}").as_bytes());
    std::fs::write(
        client.docker_config.path().join("config.json"),
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    client.pull(&reference, &out, &[]).expect_code(0);
    // A config that hands this registry to a credential helper: wedge says it does not run
    // helpers.
    std::fs::write(
        client.docker_config.path().join("config.json"),
        format!(r#"{{"credHelpers": {{"{registry}": "secretservice"}}}}"#),
    )
    .unwrap();
    client
        .run(&[
            "pull",
            &reference,
            "-o",
            out.to_str().unwrap(),
            "--no-cache",
        ])
        .expect_code(DENIED)
        .stderr_has("credential helper `secretservice`");
    // A malformed config is the user's to fix, and says where.
    std::fs::write(client.docker_config.path().join("config.json"), "{").unwrap();
    client
        .pull(&reference, &out, &[])
        .expect_code(126)
        .stderr_has("config.json is malformed");
}

#[test]
fn the_password_flag_needs_a_user_and_a_password() {
    let client = Client::new();
    let reference = format!("{}:1", repo(&registry(), "flags"));
    client
        .run(&[
            "pull",
            &reference,
            "-o",
            "/dev/null",
            "--registry-password-stdin",
        ])
        .expect_code(126);
    client
        .run_with_stdin(
            &[
                "pull",
                &reference,
                "-o",
                "/dev/null",
                "--registry-user",
                "u",
                "--registry-password-stdin",
            ],
            "",
            &[],
        )
        .expect_code(126)
        .stderr_has("stdin was empty");
}

/// The token server of the token-auth registry: what docker_auth, Harbor or GHCR's token
/// service do, reduced to one account. Anonymous callers get `pull`; the account gets what
/// it asks; a wrong password gets 401. Its tokens are ES256 JWTs signed with the key
/// scripts/services.sh made, whose certificate the registry trusts; the registry checks them.
fn token_server() -> &'static str {
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(|| {
        let address = service_url("WEDGE_TEST_REGISTRY_TOKEN_REALM");
        let listener = TcpListener::bind(&address)
            .unwrap_or_else(|e| panic!("bind the token server on {address}: {e}"));
        let key = std::fs::read_to_string(service_url("WEDGE_TEST_REGISTRY_TOKEN_KEY")).unwrap();
        let cert = std::fs::read_to_string(service_url("WEDGE_TEST_REGISTRY_TOKEN_CERT")).unwrap();
        let signer = TokenSigner {
            key: ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &pem_body(&key),
                &ring::rand::SystemRandom::new(),
            )
            .expect("the token key is PKCS#8 P-256"),
            cert_der: pem_body(&cert),
            issuer: service_url("WEDGE_TEST_REGISTRY_TOKEN_ISSUER"),
            service: service_url("WEDGE_TEST_REGISTRY_TOKEN_SERVICE"),
            user: registry_user(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                signer.answer(stream);
            }
        });
        address
    })
}

struct TokenSigner {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    issuer: String,
    service: String,
    user: (String, String),
}

impl TokenSigner {
    fn answer(&self, mut stream: TcpStream) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let request = String::from_utf8_lossy(&request).into_owned();
        let target = request.split_whitespace().nth(1).unwrap_or("");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("scope="))
            .map(percent_decode)
            .collect();
        let authorization = request.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_string())
        });
        let expected = format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.user.0, self.user.1).as_bytes())
        );
        let (status, body) = match authorization {
            Some(given) if given == expected => {
                ("200 OK", self.token(&self.user.0, &scopes, false))
            }
            Some(_) => (
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"wrong user name or password"}]}"#
                    .to_string(),
            ),
            None => ("200 OK", self.token("", &scopes, true)),
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn token(&self, subject: &str, scopes: &[String], anonymous: bool) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let actions: Vec<&str> = actions
                    .split(',')
                    .filter(|action| !anonymous || *action == "pull")
                    .collect();
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "typ": "JWT", "alg": "ES256", "x5c": [base64_encode(&self.cert_der)]
        });
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": subject, "aud": self.service,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": unique("jti-"), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("sign the token");
        let token = format!("{signing_input}.{}", base64url(signature.as_ref()));
        serde_json::json!({"token": token, "expires_in": 300}).to_string()
    }
}

#[test]
fn the_bearer_token_challenge_is_followed_anonymously_and_with_credentials() {
    token_server();
    let client = Client::new();
    let registry = service_url("WEDGE_TEST_REGISTRY_TOKEN");
    // Anonymous tokens only allow pull: the registry refuses the push until the account's
    // token is presented.
    let (reference, wrong_password) = push_needing_credentials(&client, &registry, "token");
    wrong_password.stderr_has("wrong user name or password");
    // Pulled anonymously, with the token the realm gives anyone.
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("x.wasm");
    client.pull(&reference, &out, &[]).expect_code(0);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(guest("hello.wasm")).unwrap()
    );
}

// --- TLS ----------------------------------------------------------------------------------------

#[test]
fn tls_is_verified_against_the_trusted_roots() {
    let client = Client::new();
    let registry = service_url("WEDGE_TEST_REGISTRY_TLS");
    let ca = service_url("WEDGE_TEST_REGISTRY_CA");
    let (user, password) = registry_user();
    let reference = format!("{}:1", repo(&registry, "tls"));
    let wasm = guest("hello.wasm");
    let args = [
        "push",
        wasm.to_str().unwrap(),
        &reference,
        "--registry-user",
        &user,
        "--registry-password-stdin",
    ];
    // Its CA is not trusted: refused, and never retried over plain HTTP.
    client
        .run_with_stdin(&args, &password, &[])
        .expect_code(REGISTRY_FAILED)
        .one_error_paragraph()
        .stderr_has("TLS with the registry")
        .stderr_has("SSL_CERT_FILE")
        .stderr_has("UnknownIssuer");
    client
        .run_with_stdin(&args, &password, &[("SSL_CERT_FILE", &ca)])
        .expect_code(0);
}

// --- bad command lines ------------------------------------------------------------------------

#[test]
fn bad_references_and_files_are_usage_errors() {
    let client = Client::new();
    let wasm = guest("hello.wasm");
    let wasm = wasm.to_str().unwrap();
    client
        .run(&["push", wasm, "hello:1"])
        .expect_code(126)
        .stderr_has("names no registry");
    client
        .run(&["push", wasm, "acme/hello:1"])
        .expect_code(126)
        .stderr_has("is not a registry host");
    let digest = format!("{}@sha256:{}", repo(&registry(), "d"), "a".repeat(64));
    client
        .run(&["push", wasm, &digest])
        .expect_code(126)
        .stderr_has("push to a tag");
    client
        .run(&[
            "push",
            "/nonexistent.wasm",
            &format!("{}:1", repo(&registry(), "x")),
        ])
        .expect_code(127);
    let readme = root().join("README.md");
    client
        .run(&[
            "push",
            readme.to_str().unwrap(),
            &format!("{}:1", repo(&registry(), "x")),
        ])
        .expect_code(128)
        .stderr_has("it is not WebAssembly");
    client
        .run(&["pull", "https://ghcr.io/a/b:1", "-o", "/dev/null"])
        .expect_code(126)
        .stderr_has("without a scheme");
}

// --- encodings for the token server ---------------------------------------------------------

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM is base64")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
