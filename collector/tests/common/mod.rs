//! Shared test helpers: a throw-away PKI (rcgen), rule files, synthetic events.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event, ExecEvent, Process};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a leaf certificate with these SANs.
    pub fn issue(&self, sans: Vec<SanType>, client: bool) -> Issued {
        self.issue_with(sans, client, |_| {})
    }

    /// Issues a leaf certificate, letting `tweak` adjust the parameters (e.g. validity).
    pub fn issue_with(
        &self,
        sans: Vec<SanType>,
        client: bool,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kestrel test");
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        tweak(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client certificate for agent `name` (SAN `spiffe://kestrel.local/node/NAME`).
    pub fn agent(&self, name: &str) -> Issued {
        self.issue(vec![uri(&spiffe(name))], true)
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Issued {
        self.issue(
            vec![
                dns("localhost"),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
            false,
        )
    }
}

pub fn spiffe(name: &str) -> String {
    format!("spiffe://kestrel.local/node/{name}")
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A process_creation rule matching `cat` reading `/etc/shadow`.
pub const SHADOW_RULE: &str = r#"title: Shadow file read with cat
id: 0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10
status: test
description: A shell utility read the shadow password file.
level: high
tags:
  - attack.credential-access
  - attack.t1003.008
logsource:
  category: process_creation
  product: linux
detection:
  selection:
    Image|endswith: /cat
    CommandLine|contains: /etc/shadow
  condition: selection
"#;

/// An exec of `/usr/bin/cat /etc/shadow` from bash under sshd, claiming host `liar`.
pub fn shadow_exec_event() -> Event {
    Event {
        time_unix_ns: 1_700_000_000_123_456_789,
        host: "liar".into(),
        seq: 999,
        process: Some(Process {
            pid: 4242,
            tgid: 4242,
            ppid: 4200,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            exe: "/usr/bin/cat".into(),
            comm: "cat".into(),
            argv: vec!["cat".into(), "/etc/shadow".into()],
            cwd: "/home/alice".into(),
            exec_id: "exec-4242".into(),
            parent_exec_id: "exec-4200".into(),
            ..Process::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors: vec![
                Ancestor {
                    pid: 4200,
                    exe: "/usr/bin/bash".into(),
                    argv: vec!["-bash".into()],
                    uid: 1000,
                    user: "alice".into(),
                    exec_id: "exec-4200".into(),
                    start_time_unix_ns: 1_699_999_000_000_000_000,
                },
                Ancestor {
                    pid: 4100,
                    exe: "/usr/sbin/sshd".into(),
                    argv: vec!["sshd:".into(), "alice".into()],
                    uid: 0,
                    user: "root".into(),
                    exec_id: "exec-4100".into(),
                    start_time_unix_ns: 1_699_998_000_000_000_000,
                },
            ],
            filename_truncated: false,
            ..ExecEvent::default()
        })),
        ..Event::default()
    }
}

/// An exec of `/usr/bin/ls` that no rule matches.
pub fn harmless_exec_event() -> Event {
    let mut event = shadow_exec_event();
    let process = event.process.as_mut().unwrap();
    process.exe = "/usr/bin/ls".into();
    process.comm = "ls".into();
    process.argv = vec!["ls".into(), "-l".into()];
    process.exec_id = "exec-4243".into();
    event
}

/// Connects to the collector at `addr` with `client`'s certificate, trusting `ca` for the
/// server (SAN localhost); a failure comes back as `Unavailable`.
pub async fn connect_ingest(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    client: &Issued,
) -> Result<kestrel_proto::ingest_client::IngestClient<tonic::transport::Channel>, tonic::Status> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .identity(Identity::from_pem(&client.cert_pem, &client.key_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| tonic::Status::unavailable(format!("address {addr}: {e}")))?
        .tls_config(tls)
        .map_err(|e| tonic::Status::unavailable(format!("TLS config: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
    Ok(kestrel_proto::ingest_client::IngestClient::new(channel))
}
