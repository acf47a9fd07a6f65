//! A throw-away PKI for tests (rcgen): a CA, and the agent and collector certificates it issues.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, PEM (for a collector that issues with this CA).
    pub key_pem: String,
}

/// A certificate and its private key.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Issued {
    /// Writes `DIR/NAME.pem` and `DIR/NAME-key.pem`, the key readable by its owner only (the
    /// collector and the agent refuse a key others can read).
    pub fn write(&self, dir: &std::path::Path, name: &str) {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::write(dir.join(format!("{name}.pem")), &self.cert_pem).unwrap();
        let key = dir.join(format!("{name}-key.pem"));
        let _ = std::fs::remove_file(&key);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(&mut file, self.key_pem.as_bytes()).unwrap();
    }
}

impl TestCa {
    /// A new self-signed CA called `name`.
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
            key_pem: key.serialize_pem(),
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

/// The SPIFFE identity of agent `name`.
pub fn spiffe(name: &str) -> String {
    format!("spiffe://kestrel.local/node/{name}")
}

/// A URI SAN.
pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

/// A DNS SAN.
pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}
