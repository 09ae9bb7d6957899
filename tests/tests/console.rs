//! The web console (`console` binary) end to end: a real name server and broker, the
//! console on an ephemeral port, and headless Chromium driven over WebDriver
//! (Debian's `chromedriver`) through every page. From the UI a topic is created, a
//! message with a key is sent, found by key and by id; a consumer group's lag falls
//! to zero while an SDK consumer runs and comes back after a reset by time; the
//! running consumer's running info shows its subscription and queues; an SDK
//! producer shows on the producers page; the broker's Lua queue selector shows on the
//! plugins page with the calls the sends made; a message a consumer gave up on is
//! re-sent from its dead-letter topic and found again by time in its own topic; a
//! message sent and consumed by SDK clients with message trace on shows its send and
//! its consumption in its detail's trace panel, one sent without it says it has no
//! trace. Each page is saved as a screenshot under `target/console-screenshots/`.
//!
//! The same run measures the console's footprint: its RSS after the run (at most
//! 30 MB) and the first page's time to interactive and to its first broker row (at
//! most 1 s each). A second test checks the JSON API's error answers over plain HTTP.
//!
//! Chromium and chromedriver must be installed (`apt-get install chromium
//! chromium-driver`; `.ci/run` does it): without them the browser test fails and
//! says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::MessageExt;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tests::{eventually, free_ports, Broker, Namesrv, ServerProcess};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Without these Chromium waits on the network (updates, sync, QUIC probes) on a
/// closed machine.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Long enough for a registration, a route and a consumer's rebalance on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
const MAX_RSS_KB: u64 = 30 * 1024;
const MAX_FIRST_PAGE_MS: f64 = 1000.0;

const TOPIC: &str = "ConsoleTopic";
const GROUP: &str = "ConsoleGroup";
const KEY: &str = "order-4711";
const BODY: &str = "hello from the console";
const PRODUCER_GROUP: &str = "ConsoleProducers";
/// A topic whose consumer gives up at once, so its message goes to the DLQ.
const DLQ_TOPIC: &str = "ConsoleDlqTopic";
const DLQ_GROUP: &str = "ConsoleDlqGroup";
const DLQ_KEY: &str = "dead-1";
const DLQ_BODY: &str = "nobody wants me";
/// A topic whose producer and consumer write message-trace records.
const TRACE_TOPIC: &str = "ConsoleTracedTopic";
const TRACE_GROUP: &str = "ConsoleTracedGroup";
const TRACE_PRODUCER_GROUP: &str = "ConsoleTracedProducers";
const TRACE_KEY: &str = "traced-1";
/// The broker's Lua queue selector, bound to [`TOPIC`]: every send to it calls it.
const PLUGIN: &str = "console-selector";

/// A `broker.toml` loading [`PLUGIN`] (the example hash selector) for [`TOPIC`].
fn plugin_config() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/lua/hash_selector.lua");
    format!(
        "[[broker.plugin_binding]]\nplugin = \"{PLUGIN}\"\ntopic = \"{TOPIC}\"\n\n\
         [[plugins.plugin]]\nname = \"{PLUGIN}\"\nkind = \"queue_selector\"\nruntime = \"lua\"\npath = {:?}\n",
        script.display().to_string()
    )
}

/// The console binary, built once per test process with the tests' profile.
fn console_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = profile_dir().map_err(|e| e.to_string())?;
        let mut cmd = tests::cargo();
        cmd.args(["build", "--quiet", "-p", "console", "--bin", "console"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(dir.join("console")),
            Ok(s) => Err(format!("cargo build -p console exited with {s}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    built.clone().map_err(anyhow::Error::msg)
}

/// `target/<profile>` of this test binary (`target/<profile>/deps/console-…`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("the test binary is not in target/<profile>/deps")
}

/// Where screenshots go: `$CARGO_TARGET_DIR/console-screenshots`, else the workspace
/// target directory's.
fn screenshot_dir() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => profile_dir()?.parent().context("target/<profile> has no parent")?.to_path_buf(),
    };
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn start_console(namesrv: &str) -> Result<ServerProcess> {
    ServerProcess::start(&console_binary()?, &["--namesrv", namesrv, "--listen", "127.0.0.1:0"], &[])
}

/// One HTTP request: the status and the body read as JSON (`Value::Null` if it is not).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, json_body: Option<&str>) -> Result<(u16, Value)> {
    let (status, _, body) = http_raw(addr, method, path, json_body.map(|b| ("application/json", b))).await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// One HTTP/1.1 request (chromedriver refuses HTTP/1.0) with an optional
/// `(content type, body)`: status, head, body. The body is read up to its
/// `Content-Length` (chromedriver leaves the connection open), else to the end.
async fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Result<(u16, String, String)> {
    let what = format!("{method} {path} on {addr}");
    tokio::time::timeout(WAIT, exchange(addr, method, path, body))
        .await
        .with_context(|| format!("{what} timed out"))?
        .context(what)
}

async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((content_type, b)) = body {
        req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some((_, b)) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).await?;
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            ensure!(n > 0, "the connection closed before the answer's head ended");
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        });
        let complete = match length {
            Some(len) => raw.len() >= end + 4 + len,
            None => n == 0,
        };
        if complete || n == 0 {
            let body_end = length.map_or(raw.len(), |len| (end + 4 + len).min(raw.len()));
            let body = String::from_utf8(raw[end + 4..body_end].to_vec())?;
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no status in {head:?}"))?;
            let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
            let body = if chunked { dechunk(&body).context("bad chunked body")? } else { body };
            return Ok((status, head, body));
        }
    }
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The error text of a JSON error answer, checking its shape and status.
fn error_of(answer: &(u16, Value), status: u16) -> Result<String> {
    let (got, body) = answer;
    ensure!(*got == status, "expected HTTP {status}, got {got}: {body}");
    body["error"].as_str().map(str::to_owned).with_context(|| format!("no `error` text in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn api_errors_are_json_and_name_what_failed() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let console = start_console(&ns.addr())?;
    let c = console.addr;

    let route = http(c, "GET", "/api/topics/NoSuchTopic/route", None).await?;
    let e = error_of(&route, 404)?;
    assert!(e.contains("NoSuchTopic"), "the error names the topic: {e}");
    let status = http(c, "GET", "/api/topics/NoSuchTopic/status", None).await?;
    assert!(error_of(&status, 404)?.contains("NoSuchTopic"), "{status:?}");

    let bad_name = http(c, "POST", "/api/topics", Some(r#"{"topic":"no spaces please","queues":4}"#)).await?;
    let e = error_of(&bad_name, 400)?;
    assert!(e.contains("invalid topic name `no spaces please`"), "{e}");
    let bad_queues = http(c, "POST", "/api/topics", Some(r#"{"topic":"Fine","queues":0}"#)).await?;
    assert!(error_of(&bad_queues, 400)?.contains("queue count 0"), "{bad_queues:?}");
    let not_json = http(c, "POST", "/api/topics", Some("{topic")).await?;
    assert!(error_of(&not_json, 400)?.starts_with("bad request"), "{not_json:?}");
    // A form post (as another site could make a browser send) is refused.
    let (status, _, body) = http_raw(c, "POST", "/api/topics", Some(("text/plain", r#"{"topic":"X"}"#))).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    let missing = http(c, "GET", "/api/messages?topic=T", None).await?;
    assert!(error_of(&missing, 400)?.contains("`key`"), "{missing:?}");
    let unknown = http(c, "GET", "/api/nothing/here", None).await?;
    assert!(error_of(&unknown, 404)?.contains("/api/nothing/here"), "{unknown:?}");
    let wrong_method = http(c, "DELETE", "/api/cluster", None).await?;
    assert!(error_of(&wrong_method, 405)?.contains("/api/cluster does not answer DELETE"), "{wrong_method:?}");
    let stranger = http(c, "GET", "/api/brokers/192.0.2.1:10911/runtime", None).await?;
    assert!(error_of(&stranger, 404)?.contains("no broker at 192.0.2.1:10911"), "{stranger:?}");
    let producer_id = http(c, "GET", "/api/messages/C0000202602F0DF23CCD21D038800000", None).await?;
    assert!(error_of(&producer_id, 404)?.contains("give its topic"), "{producer_id:?}");

    let no_client = http(c, "GET", "/api/groups/NoSuchGroup/clients/10.0.0.1@1", None).await?;
    let e = error_of(&no_client, 404)?;
    assert!(e.contains("10.0.0.1@1") && e.contains("NoSuchGroup"), "the error names client and group: {e}");
    let no_topic = http(c, "GET", "/api/producers?group=SomeProducers&topic=NoSuchTopic", None).await?;
    assert!(error_of(&no_topic, 404)?.contains("NoSuchTopic"), "{no_topic:?}");
    let no_group = http(c, "GET", "/api/producers?topic=T", None).await?;
    assert!(error_of(&no_group, 400)?.contains("`group`"), "{no_group:?}");
    let range = http(c, "GET", "/api/topics/NoSuchTopic/messages?begin=0", None).await?;
    assert!(error_of(&range, 404)?.contains("NoSuchTopic"), "{range:?}");
    let backwards = http(c, "GET", "/api/topics/T/messages?begin=5&end=1", None).await?;
    assert!(error_of(&backwards, 400)?.contains("begin 5 is after end 1"), "{backwards:?}");
    let not_id = http(c, "POST", "/api/messages/not-an-id/resend", None).await?;
    assert!(error_of(&not_id, 400)?.contains("not-an-id"), "{not_id:?}");
    // No broker has the trace topic: no record, not an error.
    let (status, trace) = http(c, "GET", "/api/messages/C0000202602F0DF23CCD21D038800000/trace", None).await?;
    assert_eq!((status, &trace), (200, &json!({ "records": [] })), "no trace topic, no record");
    let bad_trace_topic = http(c, "GET", "/api/messages/X/trace?traceTopic=no%20spaces", None).await?;
    assert!(error_of(&bad_trace_topic, 400)?.contains("invalid topic name"), "{bad_trace_topic:?}");
    let (status, plugins) = http(c, "GET", "/api/plugins", None).await?;
    assert_eq!((status, &plugins), (200, &json!({ "brokers": [] })), "no broker, no plugin");

    // The page itself, with a policy that keeps foreign code and framing out.
    let (status, head, page) = http_raw(c, "GET", "/", None).await?;
    assert_eq!(status, 200, "{head}");
    assert!(page.contains("FerroMQ Console") && page.contains("/console.js"), "{page}");
    assert!(head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");

    // A name server that is not there: the answer says which address failed.
    let dead = free_ports(1)?[0];
    let lost = start_console(&format!("127.0.0.1:{dead}"))?;
    let answer = http(lost.addr, "GET", "/api/cluster", None).await?;
    ensure!(answer.0 >= 500, "a dead name server is a gateway failure: {answer:?}");
    let e = answer.1["error"].as_str().unwrap_or_default();
    assert!(e.contains(&format!("127.0.0.1:{dead}")), "the error names the address: {e}");
    Ok(())
}

/// chromedriver on a free port; killed when dropped (the browser session is closed
/// before, so Chromium goes with it).
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    /// Fails, saying what to install, when Chromium or chromedriver is missing.
    fn check_installed() -> Result<()> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            ensure!(
                Path::new(path).exists(),
                "{path} is missing: the console test drives a real browser; install Debian's `chromium chromium-driver` \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        Ok(())
    }

    async fn start() -> Result<Self> {
        Self::check_installed()?;
        let port = free_ports(1)?[0];
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let driver = Self { child, port };
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        eventually(WAIT, "chromedriver to answer /status", || async move {
            let (status, body) = http(addr, "GET", "/status", None).await.ok()?;
            (status == 200 && body["value"]["ready"] == true).then_some(())
        })
        .await?;
        Ok(driver)
    }

    async fn session(&self, profile: &Path) -> Result<Client> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--window-size=1400,1000".to_owned());
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".to_owned(), json!({ "binary": CHROMIUM, "args": args }));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .context("starting headless Chromium through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn find(b: &Client, css: &str) -> Result<fantoccini::elements::Element> {
    b.find(Locator::Css(css)).await.with_context(|| format!("no element {css}"))
}

async fn click(b: &Client, css: &str) -> Result<()> {
    find(b, css).await?.click().await.with_context(|| format!("clicking {css}"))
}

async fn type_into(b: &Client, css: &str, text: &str) -> Result<()> {
    let e = find(b, css).await?;
    e.clear().await.with_context(|| format!("clearing {css}"))?;
    e.send_keys(text).await.with_context(|| format!("typing into {css}"))
}

/// The visible text of `css`, once `done` holds for it.
async fn wait_text(b: &Client, css: &str, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
    let done = &done;
    eventually(WAIT, what, || async move {
        let text = b.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        done(&text).then_some(text)
    })
    .await
}

async fn wait_for(b: &Client, css: &str, what: &str) -> Result<fantoccini::elements::Element> {
    eventually(WAIT, what, || async move { b.find(Locator::Css(css)).await.ok() }).await
}

async fn screenshot(b: &Client, dir: &Path, name: &str) -> Result<()> {
    let png = b.screenshot().await.with_context(|| format!("screenshot of {name}"))?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    println!("screenshot: {}", path.display());
    Ok(())
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_drives_every_page() -> Result<()> {
    Chromedriver::check_installed()?;
    let started_ms = common::time::now_ms();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(
        &ns.addr(),
        &plugin_config(),
        &[("BROKER_NAME", "broker-a"), ("TRACE_TOPIC_ENABLE", "true")],
    )?;
    let console = start_console(&ns.addr())?;
    // The broker is registered before the browser comes, so the first page measures
    // the console and not the registration.
    eventually(WAIT, "the broker in /api/cluster", || async {
        let (status, body) = http(console.addr, "GET", "/api/cluster", None).await.ok()?;
        (status == 200 && body.to_string().contains(&broker.addr())).then_some(())
    })
    .await?;

    let driver = Chromedriver::start().await?;
    let profile = tempfile::tempdir()?;
    let browser = driver.session(profile.path()).await?;
    let shots = screenshot_dir()?;
    // Failures come back as errors (never panics) so that the session, and Chromium
    // with it, is always closed.
    let run = drive(&browser, &console, &ns, &shots, started_ms).await;
    let closed = browser.close().await;
    run?;
    closed.context("closing the browser session")?;

    let rss = rss_kb(console.pid())?;
    println!("console RSS after the run: {rss} kB ({:.1} MB)", rss as f64 / 1024.0);
    assert!(rss <= MAX_RSS_KB, "the console uses {rss} kB of RSS, more than {MAX_RSS_KB} kB");
    Ok(())
}

async fn drive(b: &Client, console: &ServerProcess, ns: &Namesrv, shots: &Path, started_ms: i64) -> Result<()> {
    let base = format!("http://{}", console.addr);

    // ---- cluster: first page, timed ----
    b.goto(&format!("{base}/#cluster")).await?;
    wait_for(b, "#cluster-rows tr[data-addr]", "a broker row on the cluster page").await?;
    let timing = b
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             const rendered = performance.getEntriesByName('cluster-rendered')[0];
             return [nav.domInteractive, rendered ? rendered.startTime : null];",
            vec![],
        )
        .await?;
    let interactive = timing[0].as_f64().context("no domInteractive")?;
    let rendered = timing[1].as_f64().context("no cluster-rendered mark")?;
    println!("first page: DOM interactive after {interactive:.0} ms, first broker row after {rendered:.0} ms");
    ensure!(interactive <= MAX_FIRST_PAGE_MS, "DOM interactive after {interactive} ms");
    ensure!(rendered <= MAX_FIRST_PAGE_MS, "first broker row after {rendered} ms");
    let row = find(b, "#cluster-rows tr[data-addr]").await?.text().await?;
    ensure!(row.contains("broker-a") && row.contains("MASTER") && row.contains("DefaultCluster"), "{row}");
    // The rate chart fills in place, without a reload.
    eventually(WAIT, "two readings in the TPS chart", || async {
        let points = find(b, "#tps-chart").await.ok()?.attr("data-points").await.ok()??;
        (points.parse::<usize>().ok()? >= 4).then_some(())
    })
    .await?;
    click(b, "#cluster-rows tr[data-addr]").await?;
    wait_text(b, "#broker-runtime", "the broker's runtime table", |t| t.contains("brokerRole")).await?;
    screenshot(b, shots, "cluster").await?;

    // ---- topics: create, route and queues, send a message with a key ----
    click(b, "#nav-topics").await?;
    type_into(b, "#topic-name", TOPIC).await?;
    type_into(b, "#topic-queues", "4").await?;
    click(b, "#topic-create").await?;
    let created = wait_text(b, "#topic-form-result", "the topic's creation", |t| !t.is_empty()).await?;
    ensure!(created.contains(&format!("topic {TOPIC} created")), "{created}");
    wait_for(b, &format!("#topic-rows tr[data-topic=\"{TOPIC}\"]"), "the new topic in the list").await?;
    eventually(WAIT, "the topic's four queues and its route", || async {
        let queues = b.find_all(Locator::Css("#topic-status tbody tr")).await.ok()?;
        let route = b.find(Locator::Css("#topic-route tbody")).await.ok()?.text().await.ok()?;
        (queues.len() == 4 && route.contains("broker-a")).then_some(())
    })
    .await?;
    type_into(b, "#send-tags", "TagA").await?;
    type_into(b, "#send-keys", KEY).await?;
    type_into(b, "#send-body", BODY).await?;
    click(b, "#send-submit").await?;
    let sent = wait_text(b, "#send-result", "the send result", |t| !t.is_empty()).await?;
    ensure!(sent.starts_with("SEND_OK"), "{sent}");
    let msg_id = find(b, "#send-msgid").await?.text().await?;
    ensure!(msg_id.len() == 32, "a message id in the send result: {sent}");
    wait_text(b, "#topic-total", "the message counted in the topic", |t| t.starts_with("1 messages")).await?;
    screenshot(b, shots, "topics").await?;

    // ---- messages: by key, then by id ----
    click(b, "#nav-messages").await?;
    type_into(b, "#msg-topic", TOPIC).await?;
    type_into(b, "#msg-key", KEY).await?;
    click(b, "#msg-search").await?;
    let row = format!("#msg-results tr[data-msgid=\"{msg_id}\"]");
    wait_for(b, &row, "the message found by its key").await?;
    click(b, &row).await?;
    wait_text(b, "#msg-body", "the message's body", |t| t == BODY).await?;
    let props = find(b, "#msg-properties").await?.text().await?;
    ensure!(props.contains("KEYS") && props.contains(KEY) && props.contains("TagA"), "{props}");
    type_into(b, "#msgid-topic", TOPIC).await?;
    type_into(b, "#msgid-value", &msg_id).await?;
    click(b, "#msgid-search").await?;
    wait_text(b, "#msg-detail-id", "the message shown by its id", |t| t == msg_id).await?;
    // The console's producer writes no trace: the panel says so.
    wait_text(b, "#trace-rows", "the trace panel's empty line", |t| t.contains("no trace records found")).await?;
    ensure!(
        b.find_all(Locator::Css("#trace-rows tr[data-type]")).await?.is_empty(),
        "an untraced message has no trace row"
    );
    screenshot(b, shots, "messages").await?;

    // ---- consumer groups: lag to zero while a consumer runs, back after a reset ----
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = received.clone();
    let consumer = PushConsumer::builder(GROUP)
        .config(config::ClientConfig {
            namesrv_addr: vec![ns.addr()],
            persist_consumer_offset_interval: Duration::from_secs(1),
            ..config::ClientConfig::default()
        })
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            if let Ok(mut log) = log.lock() {
                log.extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
            }
            ConsumeStatus::Success
        })
        .start()
        .await?;
    let consumed = groups_while_consuming(b, &received, shots).await;
    consumer.shutdown().await;
    consumed?;

    // The consumer is gone (else it would consume again at once): replay from before
    // the message was sent.
    click(b, &format!("#group-rows tr[data-group=\"{GROUP}\"]")).await?;
    find(b, "#reset-topic").await?.select_by_value(TOPIC).await.context("picking the topic to reset")?;
    type_into(b, "#reset-time", &started_ms.to_string()).await?;
    click(b, "#reset-submit").await?;
    let reset = wait_text(b, "#reset-result", "the reset's result", |t| !t.is_empty()).await?;
    ensure!(reset.starts_with(&format!("reset 4 queues of {TOPIC}")), "{reset}");
    let lag =
        wait_text(b, "#group-lag-total", "the lag back above zero", |t| t.parse::<i64>().is_ok_and(|l| l > 0)).await?;
    ensure!(lag == "1", "one message to consume again, the page shows a lag of {lag}");
    // The list and its chart follow on their next refresh, without a reload.
    let row_lag = format!("#group-rows tr[data-group=\"{GROUP}\"] td.lag");
    wait_text(b, &row_lag, "the group list's lag back above zero", |t| t == "1").await?;
    eventually(WAIT, "the lag chart drawn", || async {
        let points = find(b, "#lag-chart").await.ok()?.attr("data-points").await.ok()??;
        (points.parse::<usize>().ok()? >= 2).then_some(())
    })
    .await?;
    screenshot(b, shots, "groups").await?;

    producers_and_plugins(b, console, ns, shots).await?;
    dead_letter(b, console, ns, shots, started_ms).await?;
    message_trace(b, console, ns, shots).await
}

/// A message sent by a traced SDK producer and consumed by a traced SDK push
/// consumer: its detail's trace panel shows the send, then the consumption under the
/// consumer's group. A message id nobody traced has no record.
async fn message_trace(b: &Client, console: &ServerProcess, ns: &Namesrv, shots: &Path) -> Result<()> {
    let c = console.addr;
    let (status, none) = http(c, "GET", "/api/messages/C0000202602F0DF23CCD21D038800000/trace", None).await?;
    ensure!((status, &none) == (200, &json!({ "records": [] })), "an untraced id has no record: {status} {none}");

    let created =
        http(c, "POST", "/api/topics", Some(&json!({ "topic": TRACE_TOPIC, "queues": 1 }).to_string())).await?;
    ensure!(created.0 == 200, "{created:?}");
    eventually(WAIT, "the traced topic's route", || async {
        let (status, _) = http(c, "GET", &format!("/api/topics/{TRACE_TOPIC}/route"), None).await.ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let cfg = config::ClientConfig { namesrv_addr: vec![ns.addr()], ..config::ClientConfig::default() };
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = received.clone();
    let consumer = PushConsumer::builder(TRACE_GROUP)
        .config(cfg.clone())
        .subscribe(TRACE_TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| {
            o.rebalance_interval = Duration::from_secs(1);
            o.enable_msg_trace = true;
        })
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            if let Ok(mut log) = log.lock() {
                log.extend(msgs.iter().map(MessageExt::msg_id));
            }
            ConsumeStatus::Success
        })
        .start()
        .await?;
    let options = client::ProducerOptions { enable_msg_trace: true, ..client::ProducerOptions::default() };
    let producer = client::Producer::new(TRACE_PRODUCER_GROUP, cfg, None, options);
    let shown = async {
        let msg = client::Message::new(TRACE_TOPIC, bytes::Bytes::from_static(b"traced")).with_keys([TRACE_KEY]);
        let sent = producer.send(msg).await?;
        ensure!(sent.status == client::SendStatus::SendOk, "{sent:?}");
        eventually(WAIT, "the traced message consumed", || async {
            received.lock().ok()?.contains(&sent.msg_id).then_some(())
        })
        .await?;

        click(b, "#nav-messages").await?;
        type_into(b, "#msg-topic", TRACE_TOPIC).await?;
        type_into(b, "#msg-key", TRACE_KEY).await?;
        click(b, "#msg-search").await?;
        let row = format!("#msg-results tr[data-msgid=\"{}\"]", sent.msg_id);
        wait_for(b, &row, "the traced message found by its key").await?;
        click(b, &row).await?;
        wait_text(b, "#msg-detail-id", "the traced message's detail", |t| t == sent.msg_id).await?;
        // Each client sends its records on its own: the panel fills in as they arrive.
        let consumed = format!("#trace-rows tr[data-type=\"SubAfter\"][data-group=\"{TRACE_GROUP}\"]");
        let (send, consumption) = eventually(WAIT, "the send and the consumption in the trace panel", || async {
            let send = b.find(Locator::Css("#trace-rows tr[data-type=\"Pub\"]")).await.ok()?.text().await.ok()?;
            let consumption = b.find(Locator::Css(&consumed)).await.ok()?.text().await.ok()?;
            Some((send, consumption))
        })
        .await?;
        ensure!(send.contains(TRACE_PRODUCER_GROUP) && send.contains("success"), "the send's row: {send}");
        ensure!(send.contains(TRACE_KEY) && send.contains(TRACE_TOPIC), "the send's keys and topic: {send}");
        ensure!(consumption.contains("success"), "the consumption's row: {consumption}");
        // Sends come first, then each group's consumptions under its heading.
        let types = b
            .execute(
                "return [...document.querySelectorAll('#trace-rows tr')]
                   .map((tr) => tr.dataset.type || ('group ' + tr.textContent));",
                vec![],
            )
            .await?;
        let types: Vec<&str> = types.as_array().context("row types")?.iter().filter_map(Value::as_str).collect();
        ensure!(
            types.first() == Some(&"Pub")
                && types.get(1) == Some(&format!("group Consumer group {TRACE_GROUP}").as_str()),
            "sends first, then the consumer group: {types:?}"
        );
        b.execute("document.getElementById('msg-trace').scrollIntoView();", vec![]).await?;
        screenshot(b, shots, "trace").await?;

        // The API gives the same records, in event order.
        let (status, trace) = http(c, "GET", &format!("/api/messages/{}/trace", sent.msg_id), None).await?;
        ensure!(status == 200, "{trace}");
        let records = trace["records"].as_array().context("no records")?;
        ensure!(records.first().is_some_and(|r| r["type"] == "Pub" && r["keys"] == TRACE_KEY), "{trace}");
        ensure!(
            records.iter().any(|r| r["type"] == "SubAfter" && r["group"] == TRACE_GROUP && r["success"] == true),
            "{trace}"
        );
        anyhow::Ok(())
    }
    .await;
    consumer.shutdown().await;
    producer.shutdown().await;
    shown
}

/// A message its consumer gives up on at once lands in the group's DLQ; from its
/// detail it is re-sent to its topic, where a search by time finds the copy.
async fn dead_letter(b: &Client, console: &ServerProcess, ns: &Namesrv, shots: &Path, started_ms: i64) -> Result<()> {
    let c = console.addr;
    let created = http(c, "POST", "/api/topics", Some(&json!({ "topic": DLQ_TOPIC, "queues": 1 }).to_string())).await?;
    ensure!(created.0 == 200, "{created:?}");
    eventually(WAIT, "the DLQ test topic's route", || async {
        let (status, _) = http(c, "GET", &format!("/api/topics/{DLQ_TOPIC}/route"), None).await.ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let consumer = PushConsumer::builder(DLQ_GROUP)
        .config(config::ClientConfig { namesrv_addr: vec![ns.addr()], ..config::ClientConfig::default() })
        .subscribe(DLQ_TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| {
            o.rebalance_interval = Duration::from_secs(1);
            o.max_reconsume_times = Some(0);
        })
        .on_message(|_: &[MessageExt], _: &ConsumeContext| ConsumeStatus::ReconsumeLater)
        .start()
        .await?;
    let dlq = format!("%DLQ%{DLQ_GROUP}");
    let landed = async {
        let body = json!({ "body": DLQ_BODY, "tags": "TagD", "keys": DLQ_KEY }).to_string();
        let (status, sent) = http(c, "POST", &format!("/api/topics/{DLQ_TOPIC}/messages"), Some(&body)).await?;
        ensure!(status == 200, "{sent}");
        // Only a dead letter can be re-sent: the original is refused, naming its topic.
        let original = sent["offsetMsgId"].as_str().context("no offsetMsgId")?;
        let refused = http(c, "POST", &format!("/api/messages/{original}/resend"), None).await?;
        ensure!(error_of(&refused, 400)?.contains(DLQ_TOPIC), "{refused:?}");
        let path = format!("/api/messages?topic=%25DLQ%25{DLQ_GROUP}&key={DLQ_KEY}");
        eventually(WAIT, "the message in the dead-letter topic", || async {
            let (status, found) = http(c, "GET", &path, None).await.ok()?;
            (status == 200 && !found["messages"].as_array()?.is_empty()).then_some(())
        })
        .await
    }
    .await;
    consumer.shutdown().await;
    landed?;
    // A DLQ is write-only: its messages are found by key, not read by time.
    let unreadable = http(c, "GET", &format!("/api/topics/%25DLQ%25{DLQ_GROUP}/messages"), None).await?;
    ensure!(error_of(&unreadable, 403)?.contains(&dlq), "{unreadable:?}");

    // The dead letter, found by key in its DLQ topic, re-sent from its detail.
    click(b, "#nav-messages").await?;
    type_into(b, "#msg-topic", &dlq).await?;
    type_into(b, "#msg-key", DLQ_KEY).await?;
    click(b, "#msg-search").await?;
    // The list still shows the previous search until this one answers.
    let found = format!("with key {DLQ_KEY} in {dlq}");
    wait_text(b, "#msg-search-result", "the dead letter found by its key", |t| t.contains(&found)).await?;
    click(b, "#msg-results tr[data-msgid]").await?;
    wait_text(b, "#msg-origin", "the dead letter's original topic", |t| t == DLQ_TOPIC).await?;
    click(b, "#msg-resend").await?;
    let resent = wait_text(b, "#msg-resend-result", "the re-send's result", |t| !t.is_empty()).await?;
    ensure!(resent.starts_with("SEND_OK") && resent.contains(DLQ_TOPIC), "{resent}");
    let copy_id = find(b, "#resend-msgid").await?.text().await?;
    screenshot(b, shots, "dead-letter").await?;

    // The copy, found by time in the original topic, with the dead letter's body.
    type_into(b, "#range-topic", DLQ_TOPIC).await?;
    type_into(b, "#range-begin", &started_ms.to_string()).await?;
    type_into(b, "#range-end", "now").await?;
    click(b, "#range-search").await?;
    let row = format!("#msg-results tr[data-msgid=\"{copy_id}\"]");
    wait_for(b, &row, "the re-sent copy found by time").await?;
    let found = wait_text(b, "#range-result", "the time search's result", |t| !t.is_empty()).await?;
    ensure!(found.starts_with("2 message(s)"), "the original and its copy: {found}");
    click(b, &row).await?;
    wait_text(b, "#msg-detail-id", "the copy's detail", |t| t == copy_id).await?;
    let body = find(b, "#msg-body").await?.text().await?;
    ensure!(body == DLQ_BODY, "{body}");
    let props = find(b, "#msg-properties").await?.text().await?;
    ensure!(props.contains(DLQ_KEY) && props.contains("TagD"), "keys and tags are kept: {props}");
    screenshot(b, shots, "messages-by-time").await?;
    Ok(())
}

/// An SDK producer on the producers page; the plugin its sends went through on the
/// plugins page.
async fn producers_and_plugins(b: &Client, console: &ServerProcess, ns: &Namesrv, shots: &Path) -> Result<()> {
    let cfg = config::ClientConfig {
        namesrv_addr: vec![ns.addr()],
        heartbeat_broker_interval: Duration::from_secs(1),
        ..config::ClientConfig::default()
    };
    let producer = client::Producer::new(PRODUCER_GROUP, cfg, None, client::ProducerOptions::default());
    let shown = async {
        let sent = producer
            .send(client::Message::new(TOPIC, bytes::Bytes::from_static(b"from an SDK producer")).with_keys(["sdk-1"]))
            .await?;
        ensure!(sent.status == client::SendStatus::SendOk, "{sent:?}");
        let client_id = producer.instance().client_id().to_owned();

        click(b, "#nav-producers").await?;
        type_into(b, "#producer-group", PRODUCER_GROUP).await?;
        type_into(b, "#producer-topic", TOPIC).await?;
        click(b, "#producer-search").await?;
        // The page asks again on each refresh until the producer's heartbeat arrives.
        let row = format!("#producer-rows tr[data-client=\"{client_id}\"]");
        let text = wait_for(b, &row, "the SDK producer on the producers page").await?.text().await?;
        ensure!(text.contains("RUST"), "the producer's language: {text}");
        screenshot(b, shots, "producers").await?;

        // A group no producer of which is connected: a 404 that names it.
        let path = format!("/api/producers?group=NoSuchProducers&topic={TOPIC}");
        let missing = http(console.addr, "GET", &path, None).await?;
        let e = error_of(&missing, 404)?;
        ensure!(e.contains("NoSuchProducers"), "{e}");
        anyhow::Ok(())
    }
    .await;
    producer.shutdown().await;
    shown?;

    // Two sends to the topic (the console's and the SDK producer's) went through the
    // selector.
    click(b, "#nav-plugins").await?;
    let row = format!("#plugin-rows tr[data-plugin=\"{PLUGIN}\"]");
    let calls = wait_text(b, &format!("{row} td.calls"), "the plugin's calls", |t| {
        t.replace(',', "").parse::<u64>().is_ok_and(|n| n >= 2)
    })
    .await?;
    let text = find(b, &row).await?.text().await?;
    ensure!(text.contains("queue_selector") && text.contains("lua"), "the plugin's kind and runtime: {text}");
    println!("plugin {PLUGIN}: {calls} calls");
    let source = find(b, &format!("{row} td.source")).await?.text().await?;
    ensure!(source == "config", "a plugin declared in broker.toml: {source}");
    let note = find(b, "#plugin-note").await?.text().await?;
    ensure!(note.contains("ferromq-admin plugin"), "{note}");

    // Reload re-reads the script: the broker serves it as generation 2.
    let generation = find(b, &format!("{row} td.generation")).await?.text().await?;
    ensure!(generation == "1", "the configured plugin's first generation: {generation}");
    click(b, &format!("{row} button.reload")).await?;
    wait_text(b, &format!("{row} td.generation"), "generation 2 after Reload", |t| t == "2").await?;
    let said = wait_text(b, "#plugin-result", "the reload's outcome", |t| !t.is_empty()).await?;
    ensure!(said.contains("reloaded"), "{said}");
    screenshot(b, shots, "plugins").await?;

    // Plugin names are lowercase; a name no broker lists is a 404.
    let invalid = http(console.addr, "POST", "/api/plugins/NoSuchPlugin/reload", None).await?;
    let e = error_of(&invalid, 400)?;
    ensure!(e.contains("NoSuchPlugin"), "{e}");
    let missing = http(console.addr, "POST", "/api/plugins/no-such-plugin/reload", None).await?;
    let e = error_of(&missing, 404)?;
    ensure!(e.contains("no-such-plugin"), "{e}");
    Ok(())
}

/// On the groups page: the group appears and its lag falls to zero once the consumer
/// has the message; the consumer's running info shows what it consumes.
async fn groups_while_consuming(b: &Client, received: &Arc<Mutex<Vec<String>>>, shots: &Path) -> Result<()> {
    eventually(WAIT, "the consumer to receive the message", || async {
        received.lock().ok()?.iter().any(|m| m == BODY).then_some(())
    })
    .await?;
    click(b, "#nav-groups").await?;
    let row = format!("#group-rows tr[data-group=\"{GROUP}\"]");
    wait_for(b, &row, "the consumer group in the list").await?;
    click(b, &row).await?;
    wait_text(b, "#group-progress tbody", "the group's queues", |t| t.contains(TOPIC)).await?;
    let lag = wait_text(b, "#group-lag-total", "the lag to fall to zero", |t| t == "0").await;
    if lag.is_err() {
        let shown = find(b, "#group-progress").await?.text().await.unwrap_or_default();
        bail!("the lag did not fall to zero; the page shows:\n{shown}");
    }
    let clients = find(b, "#group-clients").await?.text().await?;
    ensure!(clients.contains('@'), "the running consumer is listed: {clients}");

    // The consumer's running info, relayed by the broker: its subscription, its
    // properties and the four queues it holds with their commit offsets.
    click(b, "#group-clients a.client").await?;
    wait_text(b, "#running-subscriptions tbody", "the consumer's subscription", |t| t.contains(TOPIC)).await?;
    let props = wait_text(b, "#running-properties", "the consumer's properties", |t| !t.is_empty()).await?;
    ensure!(props.contains("CONSUME_PASSIVELY"), "a push consumer consumes passively: {props}");
    let held = eventually(WAIT, "the four queues the consumer holds", || async {
        let rows = b.find_all(Locator::Css(&format!("#running-queues tr[data-queue^=\"{TOPIC}@\"]"))).await.ok()?;
        (rows.len() == 4).then_some(())?;
        find(b, "#running-queues tbody").await.ok()?.text().await.ok()
    })
    .await?;
    ensure!(held.contains("broker-a"), "{held}");
    screenshot(b, shots, "running-info").await?;
    Ok(())
}
