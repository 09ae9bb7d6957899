//! Harness for end-to-end tests: starts the real `namesrv` (and later `broker`)
//! binaries as child processes on ephemeral ports with temporary directories, and
//! waits on conditions with deadlines instead of sleeping.
//!
//! Binaries are built once per test process with the same cargo and profile that
//! built the tests, so `cargo test --workspace` is the only command anyone needs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

pub mod otlp;
pub mod wire;

/// Path of a workspace binary, building it (once per process) if needed.
///
/// # Panics
/// When the binary cannot be built: every test using it would fail anyway.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = target_dir();
    let built = BUILT.get_or_init(|| {
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "namesrv",
            "--bin",
            "namesrv",
            "-p",
            "broker",
            "--bin",
            "broker",
            "-p",
            "admin",
            "--bin",
            "ferromq-admin",
            "-p",
            "controller",
            "--bin",
            "controller",
        ]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build exited with {s}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    if let Err(e) = built {
        panic!("building the server binaries failed: {e}");
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The cargo that runs the tests, without the variables it set for this test process
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …). Build scripts that watch those (ring's
/// does) would otherwise see them change between a plain build and a build started
/// here, and rebuild their crate and everything above it each time.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_tests = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_for_tests {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `target/<profile>` of the running test binary (`target/<profile>/deps/test-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf()
}

/// A server process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The remoting address from the ready line.
    pub addr: SocketAddr,
    /// Other `key on addr` lines printed at start (e.g. the HTTP endpoint).
    pub extra: Vec<String>,
    stdout: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `binary` with `env` and waits up to 30 s for `listening on ADDR`.
    ///
    /// # Errors
    /// The process exits or prints no ready line in time.
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Result<Self> {
        let mut cmd = Command::new(binary);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        cmd.env("RUST_LOG", std::env::var("FERROMQ_TEST_LOG").unwrap_or_else(|_| "warn".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("spawning {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut extra = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let addr: SocketAddr =
                            addr.trim().parse().with_context(|| format!("bad ready line {line:?}"))?;
                        // Drain lines printed right after the ready line.
                        while let Ok(more) = rx.recv_timeout(Duration::from_millis(50)) {
                            extra.push(more);
                        }
                        return Ok(Self { child, addr, extra, stdout: rx });
                    }
                    extra.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    bail!("{} printed no ready line (exit status {status:?}, output {extra:?})", binary.display());
                }
            }
        }
    }

    /// The gRPC endpoint a broker printed at start (`grpc on ADDR`).
    ///
    /// # Errors
    /// The broker printed no such line (`grpc_server_port = -1`).
    pub fn grpc_addr(&self) -> Result<SocketAddr> {
        let line = self
            .extra
            .iter()
            .find_map(|l| l.strip_prefix("grpc on "))
            .with_context(|| format!("no `grpc on` line in {:?}", self.extra))?;
        line.trim().parse().with_context(|| format!("bad grpc line {line:?}"))
    }

    /// The metrics endpoint the server printed at start (`metrics on http://ADDR/metrics`).
    ///
    /// # Errors
    /// The server printed no such line (its metrics exporter is not `PROM`).
    pub fn metrics_addr(&self) -> Result<SocketAddr> {
        let line = self
            .extra
            .iter()
            .find_map(|l| l.strip_prefix("metrics on http://"))
            .with_context(|| format!("no metrics line in {:?}", self.extra))?;
        Ok(line.trim_end_matches("/metrics").parse()?)
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    ///
    /// # Errors
    /// The process does not exit within `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("process {} did not exit within {timeout:?} of SIGTERM", self.child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the process with SIGSTOP, as a hung or partitioned node looks to its
    /// peers: its sockets stay open, nothing is read or answered.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        // SAFETY: as in `pause`.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Lines printed on stdout since start.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name server on an ephemeral loopback port with its own KV directory.
pub struct Namesrv {
    pub process: ServerProcess,
    pub home: tempfile::TempDir,
}

impl Namesrv {
    /// Starts a name server with extra `FERROMQ_NAMESRV_*` settings.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start(settings: &[(&str, &str)]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        Self::start_in(home, settings)
    }

    /// Starts a name server whose KV file lives in `home` (to test restarts).
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start_in(home: tempfile::TempDir, settings: &[(&str, &str)]) -> Result<Self> {
        let mut env = vec![
            ("HOME", home.path().display().to_string()),
            ("FERROMQ_NAMESRV_BIND_ADDRESS", "127.0.0.1".to_owned()),
            ("FERROMQ_NAMESRV_LISTEN_PORT", "0".to_owned()),
            ("FERROMQ_NAMESRV_KV_CONFIG_PATH", home.path().join("kvConfig.json").display().to_string()),
        ];
        let owned: Vec<(String, String)> =
            settings.iter().map(|(k, v)| (format!("FERROMQ_NAMESRV_{k}"), (*v).to_owned())).collect();
        for (k, v) in &owned {
            env.push((k.as_str(), v.clone()));
        }
        let process = ServerProcess::start(&binary("namesrv"), &[], &env)?;
        Ok(Self { process, home })
    }

    pub fn addr(&self) -> String {
        self.process.addr_string()
    }
}

/// Free loopback ports, found by binding and releasing them (for settings that
/// must name a port before the process starts, such as the controllers' peers).
///
/// # Errors
/// No port can be bound.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// One controller of a group (`controller` binary) with its own store.
pub struct Controller {
    pub process: ServerProcess,
    pub home: tempfile::TempDir,
    /// `n<id>`.
    pub id: String,
    peers: String,
    settings: Vec<(String, String)>,
}

impl Controller {
    /// Starts a group of `n` controllers on fresh loopback ports with extra
    /// `FERROMQ_CONTROLLER_*` settings.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start_group(n: usize, settings: &[(&str, &str)]) -> Result<Vec<Self>> {
        let ports = free_ports(n)?;
        let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("n{i}-127.0.0.1:{p}")).collect();
        let peers = peers.join(";");
        let settings: Vec<(String, String)> =
            settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        (0..n).map(|i| Self::start_in(tempfile::tempdir()?, format!("n{i}"), &peers, &settings)).collect()
    }

    fn start_in(home: tempfile::TempDir, id: String, peers: &str, settings: &[(String, String)]) -> Result<Self> {
        let mut env = vec![
            ("HOME", home.path().display().to_string()),
            ("FERROMQ_CONTROLLER_CONTROLLER_DLEGER_PEERS", peers.to_owned()),
            ("FERROMQ_CONTROLLER_CONTROLLER_DLEGER_SELF_ID", id.clone()),
            ("FERROMQ_CONTROLLER_CONTROLLER_STORE_PATH", home.path().join("controller").display().to_string()),
        ];
        let owned: Vec<(String, String)> =
            settings.iter().map(|(k, v)| (format!("FERROMQ_CONTROLLER_{k}"), v.clone())).collect();
        for (k, v) in &owned {
            env.push((k.as_str(), v.clone()));
        }
        let process = ServerProcess::start(&binary("controller"), &[], &env)?;
        Ok(Self { process, home, id, peers: peers.to_owned(), settings: settings.to_vec() })
    }

    pub fn addr(&self) -> String {
        self.process.addr_string()
    }

    /// `kill -9`, keeping the store for [`Stopped::restart`].
    pub fn kill9(self) -> StoppedController {
        let Self { process, home, id, peers, settings } = self;
        process.kill9();
        StoppedController { home, id, peers, settings }
    }
}

/// A controller killed with its store kept.
pub struct StoppedController {
    home: tempfile::TempDir,
    id: String,
    peers: String,
    settings: Vec<(String, String)>,
}

impl StoppedController {
    /// Starts it again on its port with its store.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn restart(self) -> Result<Controller> {
        Controller::start_in(self.home, self.id, &self.peers, &self.settings)
    }
}

/// Settings of a broker of set `broker_name` in controller mode (`allAckInSyncStateSet`,
/// `minInSyncReplicas` 2) with every timing short, so that failures are noticed and
/// elections happen within seconds.
pub fn controller_mode_settings(broker_name: &str, controller_addr: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BROKER_NAME", broker_name.to_owned()),
        ("ENABLE_CONTROLLER_MODE", "true".to_owned()),
        ("CONTROLLER_ADDR", controller_addr.to_owned()),
        ("ALL_ACK_IN_SYNC_STATE_SET", "true".to_owned()),
        ("MIN_IN_SYNC_REPLICAS", "2".to_owned()),
        ("BROKER_HEARTBEAT_INTERVAL", "300ms".to_owned()),
        ("CONTROLLER_HEART_BEAT_TIMEOUT", "3s".to_owned()),
        ("SYNC_BROKER_METADATA_PERIOD", "500ms".to_owned()),
        ("CHECK_SYNC_STATE_SET_PERIOD", "500ms".to_owned()),
        ("HA_MAX_TIME_SLAVE_NOT_CATCHUP", "3s".to_owned()),
        ("HA_SEND_HEARTBEAT_INTERVAL", "200ms".to_owned()),
        ("REGISTER_NAME_SERVER_PERIOD", "1s".to_owned()),
    ]
}

/// Broker settings (environment overrides) that make its store ignore the
/// machine's disk usage. CI disks run nearly full: a test broker must neither
/// refuse puts nor force-delete segments because of what else is on the disk.
pub const IGNORE_DISK_USAGE: [(&str, &str); 3] = [
    ("FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO", "95"),
    ("FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO", "1.0"),
    ("FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO", "1.0"),
];

/// The broker's config files in its home, when a test gives one: FerroMQ's TOML or
/// RocketMQ's properties.
const CONFIG_FILES: [&str; 2] = ["broker.toml", "broker.conf"];

/// A broker on an ephemeral loopback port with its own store directory.
pub struct Broker {
    pub process: ServerProcess,
    pub home: tempfile::TempDir,
    settings: Vec<(String, String)>,
}

impl Broker {
    /// Starts a broker registered with `namesrv`, with extra `FERROMQ_BROKER_*`
    /// settings (`("STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH")`, ...).
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start(namesrv: &str, settings: &[(&str, &str)]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let settings: Vec<(String, String)> =
            settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_in(home, namesrv, settings)
    }

    /// [`Broker::start`] with a `broker.toml` (e.g. `[plugins]` and
    /// `[[broker.plugin_binding]]`, which the environment cannot express); the
    /// `FERROMQ_BROKER_*` settings still apply on top. Restarts reuse the file.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start_with_config(namesrv: &str, toml: &str, settings: &[(&str, &str)]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join(CONFIG_FILES[0]), toml)?;
        let settings: Vec<(String, String)> =
            settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_in(home, namesrv, settings)
    }

    /// [`Broker::start`] with RocketMQ's own `broker.conf` properties (read with
    /// RocketMQ's key names); the harness's `FERROMQ_BROKER_*` addresses and paths
    /// still apply on top, so the file can stay as RocketMQ ships it.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start_with_properties(namesrv: &str, properties: &str, settings: &[(&str, &str)]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join(CONFIG_FILES[1]), properties)?;
        let settings: Vec<(String, String)> =
            settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_in(home, namesrv, settings)
    }

    /// The broker's store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.home.path().join("store")
    }

    fn start_in(home: tempfile::TempDir, namesrv: &str, settings: Vec<(String, String)>) -> Result<Self> {
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), home.path().display().to_string()),
            ("FERROMQ_BROKER_BIND_ADDRESS".into(), "127.0.0.1".into()),
            ("FERROMQ_BROKER_BROKER_IP1".into(), "127.0.0.1".into()),
            ("FERROMQ_BROKER_LISTEN_PORT".into(), "0".into()),
            ("FERROMQ_BROKER_HA_LISTEN_PORT".into(), "0".into()),
            ("FERROMQ_BROKER_GRPC_SERVER_PORT".into(), "0".into()),
            ("FERROMQ_BROKER_NAMESRV_ADDR".into(), namesrv.to_owned()),
            ("FERROMQ_BROKER_REGISTER_NAME_SERVER_PERIOD".into(), "2s".into()),
            ("FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR".into(), home.path().join("store").display().to_string()),
            ("FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG".into(), "67108864".into()),
            ("FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_CONSUME_QUEUE".into(), "600000".into()),
            ("FERROMQ_BROKER_STORE__MAX_HASH_SLOT_NUM".into(), "10000".into()),
            ("FERROMQ_BROKER_STORE__MAX_INDEX_NUM".into(), "40000".into()),
        ];
        env.extend(IGNORE_DISK_USAGE.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())));
        for (k, v) in &settings {
            env.push((format!("FERROMQ_BROKER_{k}"), v.clone()));
        }
        let refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let file = CONFIG_FILES.iter().map(|f| home.path().join(f)).find(|p| p.exists());
        let file = file.map(|p| p.display().to_string());
        let args: Vec<&str> = file.as_deref().map(|f| vec!["-c", f]).unwrap_or_default();
        let args = args.as_slice();
        let process = ServerProcess::start(&binary("broker"), args, &refs)?;
        Ok(Self { process, home, settings })
    }

    pub fn addr(&self) -> String {
        self.process.addr_string()
    }

    /// Stops the broker (SIGTERM, or SIGKILL when `kill9`) and starts it again on
    /// the same store, with the same settings. The port changes.
    ///
    /// # Errors
    /// The process does not stop or restart.
    pub fn restart(self, namesrv: &str, kill9: bool) -> Result<Self> {
        self.restart_with(namesrv, kill9, &[])
    }

    /// Kills the broker (SIGKILL) and keeps its home, to start it again later on the
    /// same store ([`Stopped::start`]).
    pub fn kill9_and_keep(self) -> Stopped {
        let Broker { process, home, settings } = self;
        process.kill9();
        Stopped { home, settings }
    }

    /// [`Broker::restart`] with some settings changed (or added) from then on.
    ///
    /// # Errors
    /// The process does not stop or restart.
    pub fn restart_with(self, namesrv: &str, kill9: bool, changes: &[(&str, &str)]) -> Result<Self> {
        let Broker { process, home, mut settings } = self;
        if kill9 {
            process.kill9();
        } else {
            let status = process.terminate(Duration::from_secs(15))?;
            ensure!(status.success(), "the broker exited with {status} on SIGTERM");
        }
        for (k, v) in changes {
            settings.retain(|(key, _)| key != k);
            settings.push(((*k).to_owned(), (*v).to_owned()));
        }
        Self::start_in(home, namesrv, settings)
    }
}

/// A broker that is not running, with its store and settings kept.
pub struct Stopped {
    home: tempfile::TempDir,
    settings: Vec<(String, String)>,
}

impl Stopped {
    /// Starts the broker again on its store. The port changes.
    ///
    /// # Errors
    /// See [`ServerProcess::start`].
    pub fn start(self, namesrv: &str) -> Result<Broker> {
        Broker::start_in(self.home, namesrv, self.settings)
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
///
/// # Errors
/// The condition did not hold within `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(anyhow!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET over plain HTTP/1.0: the body of a 200 answer.
///
/// # Errors
/// Transport failures, or another status.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path_and_query}: {head}");
    }
    Ok(body.to_owned())
}

/// Every body stored in `topic`, read with the SDK through the name server `ns`
/// (signed by `admin`, an admin account of the broker's ACL, if given), sorted.
///
/// # Errors
/// A route or a pull fails.
pub async fn stored_bodies(ns: &str, topic: &str, admin: Option<(&str, &str)>) -> Result<Vec<String>> {
    let cfg = config::ClientConfig {
        namesrv_addr: vec![ns.to_owned()],
        access_key: admin.map(|a| a.0.to_owned()),
        secret_key: admin.map(|a| config::Secret(a.1.to_owned())),
        ..config::ClientConfig::default()
    };
    let c = client::consumer::pull_consumer::PullConsumer::new("AuditReader", cfg, None);
    let mut out = Vec::new();
    for mq in c.fetch_subscribe_queues(topic).await? {
        let mut offset = 0;
        loop {
            let r = c.pull(&mq, "*", offset, 32).await?;
            if r.status != client::consumer::pull_api::PullStatus::Found {
                break;
            }
            out.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
            offset = r.next_begin_offset;
        }
    }
    c.shutdown().await;
    out.sort();
    Ok(out)
}
