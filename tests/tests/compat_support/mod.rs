//! Shared by the third-party client suites (`compat_python.rs`, `compat_nodejs.rs`):
//! installing a client once per target directory, and running client scripts
//! (`tests/compat/<lang>/`) as child processes that print one JSON object per line.
//!
//! Installs live in `target/compat/` and are made under an exclusive `flock`, so
//! parallel test processes (and tests within one) install once and never see a
//! half-made install. Nothing is skipped silently: a failed install fails the test
//! with what to do; `FERROMQ_SKIP_COMPAT=1` is the only way to skip, and CI never
//! sets it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// True when `FERROMQ_SKIP_COMPAT=1` asks to skip the third-party client suites,
/// e.g. on a machine without network access. A skipped test still "passes", so it
/// says so where the person running the tests sees it: straight to the process's
/// stderr, which the test harness does not capture (it captures `eprintln!`).
pub fn skipped(suite: &str) -> bool {
    let skip = std::env::var("FERROMQ_SKIP_COMPAT").is_ok_and(|v| v == "1");
    if skip {
        use std::io::Write as _;
        let line = format!(
            "SKIPPED {suite} ({}): FERROMQ_SKIP_COMPAT=1 is set, so this third-party client test did not run\n",
            std::thread::current().name().unwrap_or("?")
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    skip
}

/// `target/compat`, where clients are installed (outside the source tree, shared
/// by every test process of this target directory).
pub fn compat_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().map_or_else(|| tmp.join("compat"), |t| t.join("compat"));
    fs::create_dir_all(&dir).expect("create target/compat");
    dir
}

/// `tests/compat/<lang>`, where the client scripts are.
pub fn scripts_dir(lang: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compat").join(lang)
}

/// A venv `target/compat/<name>` with `package` installed from PyPI, made once per
/// target directory (under a lock), checked by running `import_check`; returns its
/// interpreter. `FERROMQ_PYTHON` names the Python to make it with.
///
/// # Errors
/// A step failed (its log under `target/compat` is named).
pub fn python_venv(name: &str, package: &str, import_check: &str) -> Result<PathBuf> {
    let dir = compat_dir().join(name);
    let py = dir.join("bin").join("python");
    let marker = dir.join(".ferromq-installed");
    with_install_lock(name, || {
        if fs::read_to_string(&marker).is_ok_and(|m| m.trim() == package) && py.exists() {
            return Ok(py.clone());
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing the incomplete {}", dir.display()))?;
        }
        let logs = compat_dir();
        let python3 = std::env::var("FERROMQ_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run_step(
            "creating the venv",
            Command::new(&python3).args(["-m", "venv"]).arg(&dir),
            &logs.join(format!("{name}.log")),
            Duration::from_secs(120),
        )?;
        run_step(
            "pip install",
            Command::new(&py)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--timeout", "60", package])
                .env("PIP_NO_PYTHON_VERSION_WARNING", "1"),
            &logs.join(format!("{name}-pip.log")),
            Duration::from_secs(300),
        )?;
        run_step(
            "importing the client",
            Command::new(&py).args(["-c", import_check]),
            &logs.join(format!("{name}-import.log")),
            Duration::from_secs(60),
        )?;
        fs::write(&marker, package)?;
        Ok(py.clone())
    })
}

/// Runs `f` holding an exclusive lock on `target/compat/<name>.lock`.
///
/// # Errors
/// The lock file cannot be opened or locked, or `f` fails.
pub fn with_install_lock<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let path = compat_dir().join(format!("{name}.lock"));
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved. The lock goes
    // when `file` is closed, also if `f` panics.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("flock {}: {}", path.display(), std::io::Error::last_os_error());
    }
    let out = f();
    drop(file);
    out
}

/// Runs an install step with its output in `log`, failing after `timeout`.
///
/// # Errors
/// The command cannot start, fails, or outlives `timeout`; the error quotes the
/// end of its output.
pub fn run_step(what: &str, cmd: &mut Command, log: &Path, timeout: Duration) -> Result<()> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: {cmd:?} did not finish within {timeout:?}; output:\n{}", tail(log, 40));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        bail!("{what}: {cmd:?} exited with {status}; output:\n{}", tail(log, 40));
    }
    Ok(())
}

/// The last `n` lines of a text file (for failure messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A client script running as a child process; killed when dropped.
///
/// Each stdout line that parses as a JSON object is kept; anything else (the
/// client library's own prints) is kept as text for failure messages.
pub struct ClientProcess {
    pub name: String,
    child: Child,
    rx: mpsc::Receiver<String>,
    pub lines: Vec<Value>,
    pub other: Vec<String>,
    pub stderr_log: PathBuf,
    pub home: PathBuf,
    started: Instant,
}

/// What a finished client printed.
#[derive(Debug)]
pub struct ClientOutput {
    pub name: String,
    pub lines: Vec<Value>,
    pub other: Vec<String>,
    /// `None` when the client had to be killed.
    pub status: Option<ExitStatus>,
    pub stderr_tail: String,
    /// From start to exit.
    pub elapsed: Duration,
}

impl ClientProcess {
    /// Starts `program args` with `HOME` set to `home` (the clients log there),
    /// stderr in `home/<name>.stderr`.
    ///
    /// # Errors
    /// The program cannot start.
    pub fn spawn(name: &str, program: &Path, args: &[String], home: &Path, env: &[(&str, &str)]) -> Result<Self> {
        fs::create_dir_all(home)?;
        let stderr_log = home.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr_log)?;
        let mut cmd = Command::new(program);
        cmd.args(args).env("HOME", home).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("{name}: cannot start {}", program.display()))?;
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
        Ok(Self {
            name: name.to_owned(),
            child,
            rx,
            lines: Vec::new(),
            other: Vec::new(),
            stderr_log,
            home: home.to_owned(),
            started: Instant::now(),
        })
    }

    fn take(&mut self, line: String) -> Option<&Value> {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.is_object() => {
                self.lines.push(v);
                self.lines.last()
            }
            _ => {
                self.other.push(line);
                None
            }
        }
    }

    /// Waits for a line with `"event": event`.
    ///
    /// # Errors
    /// The client exits or `timeout` passes first.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value> {
        if let Some(v) = self.lines.iter().find(|v| v["event"] == event) {
            return Ok(v.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = self.take(line) {
                        if v["event"] == event {
                            return Ok(v.clone());
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{}: no {event:?} line within {timeout:?}\n{}", self.name, self.describe())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!("{}: exited ({status:?}) before a {event:?} line\n{}", self.name, self.describe())
                }
            }
        }
    }

    /// Reads every line the client has printed so far, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.take(line);
        }
    }

    /// Reads lines until `done` holds for all the lines read so far.
    ///
    /// # Errors
    /// The client exits or `timeout` passes first.
    pub fn wait_lines(&mut self, what: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(&self.lines) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.take(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{}: {what} did not happen within {timeout:?}\n{}", self.name, self.describe())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!("{}: exited ({status:?}) before {what}\n{}", self.name, self.describe())
                }
            }
        }
        Ok(())
    }

    /// Reads the output until the client exits, killing it after `timeout`.
    ///
    /// The exit status is only reported: the C++ core has crashed in shutdown
    /// after finishing its work, so tests judge clients by their lines.
    pub fn finish(mut self, timeout: Duration) -> ClientOutput {
        let deadline = Instant::now() + timeout;
        let mut killed = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.take(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    killed = true;
                    // Collect what it printed before the kill.
                    while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(1)) {
                        self.take(line);
                    }
                    break;
                }
            }
        }
        let status = self.child.wait().ok().filter(|_| !killed);
        let elapsed = self.started.elapsed();
        eprintln!("{}: finished in {elapsed:.2?} ({} lines, exit {status:?})", self.name, self.lines.len());
        ClientOutput {
            name: self.name.clone(),
            lines: std::mem::take(&mut self.lines),
            other: std::mem::take(&mut self.other),
            status,
            stderr_tail: tail(&self.stderr_log, 30),
            elapsed,
        }
    }

    fn describe(&self) -> String {
        format!(
            "stdout (json): {:?}\nstdout (other): {:?}\nstderr tail:\n{}",
            self.lines,
            self.other,
            tail(&self.stderr_log, 30)
        )
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ClientOutput {
    /// The lines with `"event": event`.
    pub fn events(&self, event: &str) -> Vec<&Value> {
        self.lines.iter().filter(|v| v["event"] == event).collect()
    }

    /// Everything the client printed, for failure messages.
    pub fn describe(&self) -> String {
        let json: Vec<String> = self.lines.iter().map(Value::to_string).collect();
        format!(
            "== {} (exit {:?} after {:.2?})\n-- stdout:\n{}\n-- other stdout: {:?}\n-- stderr tail:\n{}",
            self.name,
            self.status,
            self.elapsed,
            json.join("\n"),
            self.other,
            self.stderr_tail
        )
    }

    /// Fails unless the client printed `event` (e.g. "done") and no "error".
    ///
    /// # Errors
    /// The client did not finish its work.
    pub fn expect_event(&self, event: &str) -> Result<()> {
        if self.events(event).is_empty() || !self.events("error").is_empty() {
            bail!("{}: expected a {event:?} line and no \"error\" line\n{}", self.name, self.describe());
        }
        Ok(())
    }
}

/// A string field of a JSON line ("" when absent or not a string).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// What one consumer should have received: every sent line (by body) for which
/// `wanted` holds, each exactly once with the same tag, keys and property; and
/// nothing else. Sent lines with a `msg_id` must come back with that id.
/// Returns the problems found (empty when all is well).
pub fn check_consumed(
    sent: &[&Value],
    received: &[&Value],
    topic: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let expected: BTreeMap<&str, &Value> = sent.iter().filter(|v| wanted(v)).map(|v| (s(v, "body"), *v)).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in received {
        let body = s(r, "body");
        *seen.entry(body).or_default() += 1;
        let Some(e) = expected.get(body) else {
            let why =
                if sent.iter().any(|v| s(v, "body") == body) { "excluded by the subscription" } else { "never sent" };
            problems.push(format!("received {body:?} ({why}): {r}"));
            continue;
        };
        for key in ["tag", "keys", "prop"] {
            if r[key] != e[key] {
                problems.push(format!("{body}: {key} is {} instead of {}", r[key], e[key]));
            }
        }
        if s(r, "topic") != topic {
            problems.push(format!("{body}: topic is {} instead of {topic:?}", r["topic"]));
        }
        let sent_id = s(e, "msg_id");
        if s(r, "msg_id").is_empty() {
            problems.push(format!("{body}: received without a message id: {r}"));
        } else if !sent_id.is_empty() && s(r, "msg_id") != sent_id {
            problems.push(format!("{body}: message id {} but the send returned {sent_id}", r["msg_id"]));
        }
    }
    for (body, n) in &seen {
        if *n > 1 && expected.contains_key(body) {
            problems.push(format!("{body} received {n} times"));
        }
    }
    for body in expected.keys() {
        if !seen.contains_key(body) {
            problems.push(format!("{body} never received"));
        }
    }
    problems
}

/// `--key value` arguments for a client script.
pub fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [format!("--{k}"), (*v).to_owned()]).collect()
}

/// Arguments of a consumer script: receive `expect` messages of `topic` as `group`
/// within 60 s; `extra` holds `--expr`, `--model`, `--fail-once` and the like.
pub fn consumer_args(ns: &str, group: &str, topic: &str, expect: usize, extra: &[&str]) -> Vec<String> {
    let n = expect.to_string();
    let mut a = args(&[("namesrv", ns), ("topic", topic), ("group", group), ("expect", &n), ("deadline", "60")]);
    a.extend(extra.iter().map(|x| (*x).to_owned()));
    a
}

/// Fails with every problem and the clients' output.
pub fn report(problems: Vec<String>, outputs: &[&ClientOutput]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let outs: Vec<String> = outputs.iter().map(|o| o.describe()).collect();
    bail!("{}\n\n{}", problems.join("\n"), outs.join("\n\n"))
}

/// Waits until the name server at `ns` routes `topic`.
pub async fn wait_route(ns: &str, topic: &str) -> Result<()> {
    let w = tests::wire::Wire::new(ns.to_owned());
    tests::eventually(Duration::from_secs(15), &format!("the route of {topic}"), || async {
        tests::wire::route(&w.client, ns, topic).await.ok().flatten().filter(|r| !r.queue_datas.is_empty())
    })
    .await?;
    Ok(())
}

/// A name server and a broker enforcing `acl` (a `plain_acl.yml`), and an SDK admin
/// signing as `admin` that created `topic` (4 queues) and waited for its route.
pub async fn acl_cluster(
    acl: &str,
    admin: (&str, &str),
    topic: &str,
) -> Result<(tempfile::TempDir, tests::Namesrv, tests::Broker, client::Admin)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plain_acl.yml");
    std::fs::write(&path, acl)?;
    let ns = tests::Namesrv::start(&[])?;
    let broker =
        tests::Broker::start(&ns.addr(), &[("ACL_ENABLE", "true"), ("ACL_FILE", &path.display().to_string())])?;
    let cfg = config::ClientConfig {
        namesrv_addr: vec![ns.addr()],
        access_key: Some(admin.0.to_owned()),
        secret_key: Some(config::Secret(admin.1.to_owned())),
        ..config::ClientConfig::default()
    };
    let a = client::Admin::new(cfg, None);
    tests::eventually(Duration::from_secs(30), "the broker registered", || async {
        a.cluster_info().await.ok().filter(|i| !i.broker_addr_table.is_empty())
    })
    .await?;
    a.create_topic(topic, 4, None).await?;
    wait_route(&ns.addr(), topic).await?;
    Ok((dir, ns, broker, a))
}

/// The broker's count of requests its ACL refused.
pub async fn acl_denied(admin: &client::Admin, broker: &str) -> Option<u64> {
    admin.broker_runtime_info(broker).await.ok()?.get("aclDenied")?.parse().ok()
}
