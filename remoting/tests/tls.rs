//! TLS on the remoting port, in process, with certificates the test makes (rcgen):
//! each server mode, client certificates, server verification, and certificate
//! files replaced while serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use remoting::server::{Dispatcher, RemotingServer, ServerConfig};
use remoting::tls::{ClientAuth, ClientTls, Mode, ServerFiles, ServerTls};
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and
/// a second CA that signed nothing here.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self { dir: tempfile::tempdir().unwrap() };
        pki.issue("ca", "server", "client");
        let other = rcgen::KeyPair::generate().unwrap();
        let other_ca = ca_params("Other CA").self_signed(&other).unwrap();
        std::fs::write(pki.path("other-ca.pem"), other_ca.pem()).unwrap();
        pki
    }

    /// Makes `<ca>.pem` and, signed by it, `<server>.pem`/`-key.pem` and
    /// `<client>.pem`/`-key.pem`.
    fn issue(&self, ca: &str, server: &str, client: &str) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params(ca).self_signed(&ca_key).unwrap();
        std::fs::write(self.path(&format!("{ca}.pem")), ca_cert.pem()).unwrap();
        for (name, sans) in
            [(server, vec!["127.0.0.1".to_owned(), "localhost".to_owned()]), (client, vec!["client".to_owned()])]
        {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(sans).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_files(&self, client_auth: ClientAuth) -> ServerFiles {
        ServerFiles {
            cert: self.path("server.pem"),
            key: self.path("server-key.pem"),
            trust: Some(self.path("ca.pem")),
            client_auth,
        }
    }
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p
}

/// A server answering HEART_BEAT with SUCCESS.
async fn server(tls: Option<Arc<ServerTls>>) -> RemotingServer {
    let mut d = Dispatcher::new();
    d.register(RequestCode::HEART_BEAT, |_, _| async { Some(RemotingCommand::success()) });
    let mut config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.tls = tls;
    RemotingServer::bind(config, Arc::new(d)).await.unwrap()
}

fn client(tls: Option<ClientTls>) -> RemotingClient {
    RemotingClient::new(ClientConfig { tls, ..ClientConfig::default() }, None)
}

/// Whether a heartbeat through `client` is answered.
async fn answered(client: &RemotingClient, server: &RemotingServer) -> bool {
    let addr = server.local_addr().to_string();
    let ok = matches!(
        client.invoke(&addr, RemotingCommand::request(RequestCode::HEART_BEAT), Duration::from_secs(5)).await,
        Ok(r) if r.code == 0
    );
    client.close(&addr);
    ok
}

fn trusting(pki: &Pki, ca: &str) -> ClientTls {
    ClientTls::new(Some(&pki.path(ca)), None).unwrap()
}

fn load(mode: Mode, files: ServerFiles) -> Arc<ServerTls> {
    ServerTls::load(mode, files).unwrap().expect("a TLS mode")
}

#[tokio::test]
async fn enforcing_serves_tls_and_closes_plaintext() {
    let pki = Pki::new();
    let s = server(Some(load(Mode::Enforcing, pki.server_files(ClientAuth::None)))).await;
    assert!(answered(&client(Some(trusting(&pki, "ca.pem"))), &s).await, "a verified TLS client");
    assert!(answered(&client(Some(ClientTls::new(None, None).unwrap())), &s).await, "a client verifying nothing");
    assert!(!answered(&client(None), &s).await, "plaintext is closed");
    // Nothing of any of them stays (closing is asynchronous: wait for it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.connection_count() != 0 {
        assert!(std::time::Instant::now() < deadline, "{} connections left", s.connection_count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn permissive_serves_tls_and_plaintext_on_one_port() {
    let pki = Pki::new();
    let s = server(Some(load(Mode::Permissive, pki.server_files(ClientAuth::None)))).await;
    let (tls, plain) = (client(Some(trusting(&pki, "ca.pem"))), client(None));
    for _ in 0..3 {
        assert!(answered(&tls, &s).await);
        assert!(answered(&plain, &s).await);
    }
}

#[tokio::test]
async fn a_client_refuses_a_server_its_roots_did_not_sign() {
    let pki = Pki::new();
    let s = server(Some(load(Mode::Enforcing, pki.server_files(ClientAuth::None)))).await;
    assert!(!answered(&client(Some(trusting(&pki, "other-ca.pem"))), &s).await);
}

#[tokio::test]
async fn client_certificates_required_or_optional() {
    let pki = Pki::new();
    let with_cert =
        ClientTls::new(Some(&pki.path("ca.pem")), Some((&pki.path("client.pem"), &pki.path("client-key.pem"))))
            .unwrap();
    let required = server(Some(load(Mode::Enforcing, pki.server_files(ClientAuth::Require)))).await;
    assert!(!answered(&client(Some(trusting(&pki, "ca.pem"))), &required).await, "no certificate, refused");
    assert!(answered(&client(Some(with_cert.clone())), &required).await);
    let optional = server(Some(load(Mode::Enforcing, pki.server_files(ClientAuth::Optional)))).await;
    assert!(answered(&client(Some(trusting(&pki, "ca.pem"))), &optional).await, "no certificate, accepted");
    assert!(answered(&client(Some(with_cert)), &optional).await);
    // A certificate from a CA the server does not trust is refused even when optional.
    pki.issue("stranger-ca", "stranger-server", "stranger");
    let stranger =
        ClientTls::new(Some(&pki.path("ca.pem")), Some((&pki.path("stranger.pem"), &pki.path("stranger-key.pem"))))
            .unwrap();
    assert!(!answered(&client(Some(stranger)), &optional).await);
}

#[tokio::test]
async fn replaced_certificate_files_are_taken_and_broken_ones_are_not() {
    let pki = Pki::new();
    let tls = load(Mode::Enforcing, pki.server_files(ClientAuth::None));
    let s = server(Some(tls.clone())).await;
    assert!(!tls.reload_if_changed().unwrap(), "nothing changed");
    // A new server certificate from another CA.
    pki.issue("ca2", "server2", "client2");
    std::fs::copy(pki.path("server2.pem"), pki.path("server.pem")).unwrap();
    std::fs::copy(pki.path("server2-key.pem"), pki.path("server-key.pem")).unwrap();
    assert!(!answered(&client(Some(trusting(&pki, "ca2.pem"))), &s).await, "still the old certificate");
    assert!(tls.reload_if_changed().unwrap());
    assert!(answered(&client(Some(trusting(&pki, "ca2.pem"))), &s).await, "the new certificate");
    // A broken key: the previous files stay in use.
    std::fs::write(pki.path("server-key.pem"), "not a key").unwrap();
    assert!(tls.reload_if_changed().is_err());
    assert!(answered(&client(Some(trusting(&pki, "ca2.pem"))), &s).await);
}

#[test]
fn missing_or_mismatched_files_are_errors_that_name_them() {
    let pki = Pki::new();
    let mut files = pki.server_files(ClientAuth::None);
    files.cert = pki.path("nowhere.pem");
    let e = ServerTls::load(Mode::Enforcing, files).unwrap_err().to_string();
    assert!(e.contains("nowhere.pem"), "{e}");
    let mut files = pki.server_files(ClientAuth::None);
    files.key = pki.path("client-key.pem");
    assert!(ServerTls::load(Mode::Enforcing, files).is_err(), "a key of another certificate");
    let mut files = pki.server_files(ClientAuth::Require);
    files.trust = None;
    assert!(ServerTls::load(Mode::Enforcing, files).is_err(), "client certificates without roots");
    assert!(ServerTls::load(Mode::Disabled, pki.server_files(ClientAuth::None)).unwrap().is_none());
}
