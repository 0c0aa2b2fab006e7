//! wedge in a container image: deploy/image/build.sh builds it (no Docker daemon), containerd
//! (Debian's, with runc, as `scripts/services.sh start containerd` runs it) imports it,
//! pushes it to the test registry, pulls it back and runs it the way
//! deploy/kubernetes/deployment.yaml does: an init step that pulls the function from the
//! registry with `wedge pull`, then `wedge serve` with the ConfigMap's manifest and runtime
//! config, answering on /_wedge/health and stopping cleanly on SIGTERM as PID 1. The
//! Kubernetes files are validated offline with kubernetes-validate --strict.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::server::get;
use support::services::{redis_url, service_url, unique};
use support::{Wedge, guest, root};

/// The uid the image runs as (deploy/image/build.sh).
const IMAGE_UID: u32 = 65532;

/// `ctr` on the test containerd, in a namespace of its own (removed when dropped).
struct Containerd {
    socket: String,
    namespace: String,
}

impl Containerd {
    fn new() -> Containerd {
        Containerd {
            socket: service_url("WEDGE_TEST_CONTAINERD"),
            namespace: unique("wedge-test-"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .args(["--address", &self.socket, "--namespace", &self.namespace])
            .stdin(Stdio::null());
        command
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().expect("run ctr");
        assert!(
            output.status.success(),
            "ctr {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `ctr run --rm --net-host` of `image` as container `id`, with bind mounts
    /// (host, container, "ro" | "rw") and the read-only root filesystem the Deployment asks
    /// for. Its output goes to `log`.
    fn spawn(
        &self,
        image: &str,
        id: &str,
        mounts: &[(&Path, &str, &str)],
        args: &[&str],
        log: &Path,
    ) -> Child {
        let mut command = self.command();
        command.args(["run", "--rm", "--net-host", "--read-only"]);
        for (host, container, mode) in mounts {
            command.args([
                "--mount",
                &format!(
                    "type=bind,src={},dst={container},options=rbind:{mode}",
                    host.display()
                ),
            ]);
        }
        let log = std::fs::File::create(log).expect("log file");
        command
            .args([image, id])
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ctr run")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Whatever a failed test left: tasks, containers, images, then the namespace.
        let list = |what: &str| -> Vec<String> {
            let output = self.command().args([what, "ls", "-q"]).output();
            output
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for task in list("tasks") {
            let _ = self
                .command()
                .args(["tasks", "kill", "-s", "SIGKILL", &task])
                .output();
            let _ = self
                .command()
                .args(["tasks", "delete", "--force", &task])
                .output();
        }
        for container in list("containers") {
            let _ = self
                .command()
                .args(["containers", "delete", &container])
                .output();
        }
        // --sync: wait for the garbage collection that removes their content and snapshots,
        // else the namespace is not empty yet.
        for image in list("images") {
            let _ = self
                .command()
                .args(["images", "remove", "--sync", &image])
                .output();
        }
        let _ = Command::new("ctr")
            .args([
                "--address",
                &self.socket,
                "namespaces",
                "remove",
                &self.namespace,
            ])
            .output();
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for ctr") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn build_image(out: &Path) -> String {
    let output = Command::new(root().join("deploy/image/build.sh"))
        .args(["--wedge", env!("CARGO_BIN_EXE_wedge"), "--out"])
        .arg(out)
        .args(["--tag", "test"])
        .output()
        .expect("run deploy/image/build.sh");
    assert!(
        output.status.success(),
        "build.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let digest = stdout
        .split_whitespace()
        .nth(1)
        .expect("build.sh prints the digest");
    digest.to_string()
}

/// A directory the image's user can write (bind mounts keep the host's owners).
fn dir_for_image(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(IMAGE_UID), Some(IMAGE_UID))
        .expect("chown (tests run as root)");
    dir
}

/// The files of deploy/kubernetes/configmap.yaml, read with PyYAML (kubernetes-validate's).
fn configmap_files() -> serde_json::Value {
    let python = root().join("target/toolchains/tools-venv/bin/python");
    let output = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['data']))",
        ])
        .arg(root().join("deploy/kubernetes/configmap.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup-toolchains.sh", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[test]
fn the_image_pulls_a_function_from_the_registry_serves_it_and_stops_on_sigterm() {
    let ctr = Containerd::new();
    let work = tempfile::tempdir().unwrap();
    let registry = service_url("WEDGE_TEST_REGISTRY");

    // Built without a daemon, reproducibly: the same inputs give the same manifest digest.
    let layout = work.path().join("layout");
    let digest = build_image(&layout);
    assert_eq!(
        build_image(&work.path().join("again")),
        digest,
        "build.sh is reproducible"
    );

    // containerd imports the layout, pushes it to the registry, and a fresh namespace pulls
    // it from there.
    let image = format!("{registry}/{}:test", unique("tests/wedge-image-"));
    let base = image.trim_end_matches(":test");
    ctr.ok(&[
        "images",
        "import",
        "--base-name",
        base,
        &format!("{}.tar", layout.display()),
    ]);
    ctr.ok(&["images", "push", "--plain-http", &image]);
    let runner = Containerd::new();
    runner.ok(&["images", "pull", "--plain-http", &image]);
    let listed = String::from_utf8_lossy(&runner.ok(&["images", "ls"]).stdout).into_owned();
    assert!(
        listed.contains(&digest),
        "pulled the pushed image: {listed}"
    );

    // A container image is not a function: `wedge pull` says what it is instead.
    let refused = Wedge::new().run(&[
        "pull",
        &image,
        "-o",
        work.path().join("x.wasm").to_str().unwrap(),
    ]);
    refused
        .expect_code(141)
        .stderr_has("application/vnd.oci.image.config.v1+json")
        .stderr_has("a container image, not a Wasm artifact");

    // The function, published the way a user would.
    let function = format!("{registry}/{}:1", unique("tests/image-fn-"));
    Wedge::new()
        .run(&[
            "push",
            guest("http-hello.wasm").to_str().unwrap(),
            &function,
        ])
        .expect_code(0);

    // The init container: wedge pull inside the image, as its non-root user.
    let functions = dir_for_image(work.path(), "functions");
    let scratch = dir_for_image(work.path(), "tmp");
    let init_log = work.path().join("init.log");
    let mut init = runner.spawn(
        &image,
        "pull-functions",
        &[(&functions, "/functions", "rw"), (&scratch, "/tmp", "rw")],
        &[
            "/usr/bin/wedge",
            "pull",
            &function,
            "--output",
            "/functions/hello.wasm",
            "--no-cache",
        ],
        &init_log,
    );
    let status = wait_exit(&mut init, Duration::from_secs(120));
    let log = std::fs::read_to_string(&init_log).unwrap_or_default();
    assert_eq!(status, Some(0), "the init step pulled the function:\n{log}");
    let pulled = functions.join("hello.wasm");
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(guest("http-hello.wasm")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&pulled).unwrap().uid(),
        IMAGE_UID,
        "written as the image's user"
    );

    // The server, with the ConfigMap's manifest and runtime config (Redis at the test's).
    let files = configmap_files();
    let app = work.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("wedge.toml"),
        files["wedge.toml"].as_str().unwrap(),
    )
    .unwrap();
    let runtime = files["runtime.toml"]
        .as_str()
        .unwrap()
        .replace("redis://redis:6379", &redis_url());
    std::fs::write(app.join("runtime.toml"), runtime).unwrap();
    let data = dir_for_image(work.path(), "data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve_log = work.path().join("serve.log");
    let mut server = runner.spawn(
        &image,
        "wedge",
        &[
            (&app, "/etc/wedge/app", "ro"),
            (&functions, "/functions", "ro"),
            (&data, "/data", "rw"),
            (&scratch, "/tmp", "rw"),
        ],
        &[
            "/usr/bin/wedge",
            "serve",
            "--listen",
            &listen,
            "--app",
            "/etc/wedge/app/wedge.toml",
            "--runtime-config",
            "/etc/wedge/app/runtime.toml",
            "--data",
            "/data",
            "--shutdown-timeout",
            "20s",
        ],
        &serve_log,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Connect first: `get` fails the test on a refused connection.
        if std::net::TcpStream::connect(&listen).is_ok()
            && get(&format!("http://{listen}/_wedge/health")).status == 200
        {
            break;
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "wedge serve in the container exited ({status}):\n{}",
                std::fs::read_to_string(&serve_log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the container never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply = get(&format!("http://{listen}/"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from wedge\n");
    assert_eq!(
        std::fs::metadata(data.join("api-token")).unwrap().uid(),
        IMAGE_UID,
        "the data dir is written as the image's user"
    );

    // SIGTERM to PID 1: wedge handles it, drains, exits 0, long before a grace period.
    let stopped = Instant::now();
    runner.ok(&["tasks", "kill", "--signal", "SIGTERM", "wedge"]);
    let status = wait_exit(&mut server, Duration::from_secs(15));
    let log = std::fs::read_to_string(&serve_log).unwrap_or_default();
    assert_eq!(status, Some(0), "a clean exit on SIGTERM:\n{log}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stopped on the signal, not on a timeout ({:?})",
        stopped.elapsed()
    );
    assert!(log.contains("shutdown signal received"), "{log}");
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    let validate = root().join("target/toolchains/bin/kubernetes-validate");
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for needed in ["configmap.yaml", "deployment.yaml", "service.yaml"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} in deploy/kubernetes: {names:?}"
        );
    }
    let output = Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/setup-toolchains.sh",
                validate.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate --strict:\n{text}"
    );
    assert_eq!(text.matches("passed").count(), files.len(), "{text}");

    // The validator is strict indeed: a misspelt key in a copy of the Deployment fails it.
    let work = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    let misspelt = work.path().join("deployment.yaml");
    std::fs::write(
        &misspelt,
        deployment.replace("readinessProbe:", "readinesProbe:"),
    )
    .unwrap();
    let output = Command::new(&validate)
        .arg("--strict")
        .arg(&misspelt)
        .output()
        .unwrap();
    assert!(!output.status.success(), "a misspelt key is refused");

    // The probes are on wedge's health endpoint.
    assert_eq!(deployment.matches("path: /_wedge/health").count(), 3);
}
