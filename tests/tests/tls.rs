//! TLS on the remoting ports of real processes, with certificates the test makes
//! (rcgen): a permissive name server (brokers register in plain TCP, clients look up
//! routes over TLS), an enforcing broker the SDK sends to and reads from over TLS and
//! a plaintext client cannot use, `openssl s_client` completing a verified handshake
//! on it, and a broker that requires client certificates; then a cluster where
//! every port enforces TLS (name server, three controllers, a controller-mode
//! master and its slave, HA port included), so that it only forms and replicates
//! when the servers' own connections use TLS too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::consumer::pull_consumer::PullConsumer;
use client::{Admin, Message, Producer, ProducerOptions};
use tests::{eventually, Broker, Controller, Namesrv};

const WAIT: Duration = Duration::from_secs(30);

/// A CA, a certificate for 127.0.0.1 (servers) and one for a client, in `dir`.
fn pki(dir: &Path) -> Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "FerroMQ test CA");
    let ca = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (name, sans) in [("server", vec!["127.0.0.1".to_owned()]), ("client", vec!["client".to_owned()])] {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(sans)?.signed_by(&key, &ca, &ca_key)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem())?;
    }
    Ok(())
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn client_config(ns: &str, tls: Option<(PathBuf, Option<(PathBuf, PathBuf)>)>) -> config::ClientConfig {
    let mut c = config::ClientConfig { namesrv_addr: vec![ns.to_owned()], ..config::ClientConfig::default() };
    if let Some((trust, identity)) = tls {
        c.tls_enable = true;
        c.tls_trust_cert_path = Some(trust);
        if let Some((cert, key)) = identity {
            c.tls_cert_path = Some(cert);
            c.tls_key_path = Some(key);
        }
    }
    c
}

async fn send_all(cfg: config::ClientConfig, topic: &str, bodies: &[String]) -> Result<()> {
    let producer =
        Producer::new("TlsPG", cfg, None, ProducerOptions { retry_times_when_send_failed: 0, ..Default::default() });
    let result = async {
        for b in bodies {
            producer.send(Message::new(topic, b.clone().into_bytes())).await?;
        }
        anyhow::Ok(())
    }
    .await;
    producer.shutdown().await;
    result
}

async fn stored(cfg: config::ClientConfig, topic: &str) -> Result<Vec<String>> {
    let c = PullConsumer::new("TlsReader", cfg, None);
    let mut out = Vec::new();
    for mq in c.fetch_subscribe_queues(topic).await? {
        let r = c.pull(&mq, "*", 0, 64).await?;
        out.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
    }
    c.shutdown().await;
    out.sort();
    Ok(out)
}

fn tls_settings(dir: &Path, mode: &'static str, client_auth: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("TLS__MODE", mode.to_owned()),
        ("TLS__CERT_PATH", p(dir, "server.pem")),
        ("TLS__KEY_PATH", p(dir, "server-key.pem")),
        ("TLS__TRUST_CERT_PATH", p(dir, "ca.pem")),
        ("TLS__NEED_CLIENT_AUTH", client_auth.to_owned()),
    ]
}

fn as_env<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn start_broker(ns: &str, name: &str, settings: &[(&'static str, String)]) -> Result<Broker> {
    let mut all: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("BROKER_NAME", name));
    Broker::start(ns, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ports_serve_the_sdk_and_openssl_and_refuse_what_they_must() -> Result<()> {
    let dir = tempfile::tempdir()?;
    pki(dir.path())?;
    let d = dir.path();
    let ns_settings = tls_settings(d, "permissive", "none");
    let ns = Namesrv::start(&ns_settings.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())?;
    let n = ns.addr();
    let broker = start_broker(&n, "broker-tls", &tls_settings(d, "enforcing", "none"))?;

    let tls = client_config(&n, Some((d.join("ca.pem"), None)));
    let admin = Admin::new(tls.clone(), None);
    eventually(WAIT, "the broker registered", || async {
        admin.cluster_info().await.ok().filter(|i| !i.broker_addr_table.is_empty())
    })
    .await?;
    admin.create_topic("TlsTopic", 2, None).await?;
    eventually(WAIT, "the topic's route", || async { admin.topic_route("TlsTopic").await.ok() }).await?;

    // The SDK over TLS sends and reads back.
    let bodies: Vec<String> = (0..10).map(|i| format!("tls-{i}")).collect();
    send_all(tls.clone(), "TlsTopic", &bodies).await?;
    assert_eq!(stored(tls.clone(), "TlsTopic").await?, bodies);

    // A plaintext client gets routes from the permissive name server, but the
    // enforcing broker closes it.
    let plain = client_config(&n, None);
    let e = send_all(plain, "TlsTopic", &["plain".to_owned()]).await.expect_err("plaintext to an enforcing broker");
    assert!(!format!("{e:#}").is_empty());
    assert_eq!(stored(tls.clone(), "TlsTopic").await?, bodies, "nothing plaintext was stored");

    // OpenSSL completes a verified handshake with the broker.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &broker.addr(), "-CAfile", &p(d, "ca.pem"), "-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl s_client (install the openssl package)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !text.contains("Verification: OK") {
        bail!("openssl s_client did not verify the broker:\n{text}");
    }

    // A broker requiring client certificates: refused without one, served with one.
    let mtls = start_broker(&n, "broker-mtls", &tls_settings(d, "enforcing", "require"))?;
    let with_cert = client_config(&n, Some((d.join("ca.pem"), Some((d.join("client.pem"), d.join("client-key.pem"))))));
    let a = Admin::new(with_cert.clone(), None);
    assert!(Admin::new(tls.clone(), None).broker_runtime_info(&mtls.addr()).await.is_err(), "no client certificate");
    let info =
        eventually(WAIT, "the mTLS broker answering", || async { a.broker_runtime_info(&mtls.addr()).await.ok() })
            .await?;
    assert!(info.contains_key("commitLogMaxOffset"));
    a.shutdown();
    admin.shutdown();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_every_port_enforces_tls_forms_and_serves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    pki(dir.path())?;
    let d = dir.path();
    let mut server = tls_settings(d, "enforcing", "none");
    // The connections the servers open: Raft between the controllers, the broker's
    // to the controllers and the name server.
    server.push(("OUTGOING_TLS__ENABLE", "true".to_owned()));
    server.push(("OUTGOING_TLS__TRUST_CERT_PATH", p(d, "ca.pem")));

    let ns = Namesrv::start(&as_env(&tls_settings(d, "enforcing", "none")))?;
    let n = ns.addr();
    let controllers = Controller::start_group(3, &as_env(&server))?;
    let controller_addrs: Vec<String> = controllers.iter().map(Controller::addr).collect();
    let mut broker_settings = server.clone();
    broker_settings.push(("ENABLE_CONTROLLER_MODE", "true".to_owned()));
    broker_settings.push(("CONTROLLER_ADDR", controller_addrs.join(";")));
    let broker = start_broker(&n, "broker-all-tls", &broker_settings)?;

    let tls = client_config(&n, Some((d.join("ca.pem"), None)));
    let admin = Admin::new(tls.clone(), None);
    // Registered with the name server as the set's master: the controllers agreed
    // (over TLS) on its id and role, and the broker told the name server (over TLS).
    eventually(WAIT, "the broker registered as master", || async {
        let info = admin.cluster_info().await.ok()?;
        let data = info.broker_addr_table.get("broker-all-tls")?;
        (data.broker_addrs.get(&0) == Some(&broker.addr())).then_some(())
    })
    .await?;
    admin.create_topic("AllTls", 2, None).await?;
    eventually(WAIT, "the topic's route", || async { admin.topic_route("AllTls").await.ok() }).await?;
    let bodies: Vec<String> = (0..10).map(|i| format!("all-tls-{i}")).collect();
    send_all(tls.clone(), "AllTls", &bodies).await?;
    assert_eq!(stored(tls.clone(), "AllTls").await?, bodies);

    // A slave joins the set and copies the master's log over the HA port's TLS.
    let slave = start_broker(&n, "broker-all-tls", &broker_settings)?;
    let end = |info: std::collections::BTreeMap<String, String>| info.get("commitLogMaxOffset").cloned();
    let master_end = end(admin.broker_runtime_info(&broker.addr()).await?).context("the master's end")?;
    eventually(WAIT, "the slave holding the master's log", || async {
        let slave_end = end(admin.broker_runtime_info(&slave.addr()).await.ok()?)?;
        (slave_end == master_end).then_some(())
    })
    .await?;

    // Plain TCP reaches none of them.
    let plain = Admin::new(client_config(&n, None), None);
    assert!(plain.cluster_info().await.is_err(), "the name server answered plain TCP");
    assert!(plain.broker_runtime_info(&broker.addr()).await.is_err(), "the broker answered plain TCP");
    plain.shutdown();
    admin.shutdown();
    drop(controllers);
    Ok(())
}
