//! `cargo xtask certs`: a development PKI for mTLS between agents and the collector.
//!
//! One ECDSA P-256 CA (`ca.pem`, `ca-key.pem`), reused when it already exists so that agents
//! added later chain to the same CA; a collector server certificate (`collector.pem`, SAN
//! `localhost` and `127.0.0.1`); per agent a client certificate (`NAME.pem`, SAN
//! `spiffe://kestrel.local/node/NAME`). Key files are written with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// SPIFFE trust domain of the development PKI.
pub const TRUST_DOMAIN: &str = "kestrel.local";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long collector and agent certificates are valid.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Backdating, so clocks that are slightly behind accept fresh certificates.
const BACKDATE: Duration = Duration::hours(1);

/// What [`generate`] did.
#[derive(Debug)]
pub struct Pki {
    /// Whether an existing `ca.pem`/`ca-key.pem` was reused.
    pub ca_reused: bool,
    /// The files written, in order.
    pub written: Vec<PathBuf>,
}

/// The SPIFFE ID that names agent `name`: `spiffe://kestrel.local/node/NAME`.
pub fn agent_spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/node/{name}")
}

/// Checks that `name` can be an agent name: non-empty, only `[A-Za-z0-9._-]`, starting with a
/// letter or digit, and not clashing with the CA's or the collector's files.
pub fn validate_agent_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "agent name is empty");
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        bail!("agent name {name:?}: character {bad:?} is not allowed (use A-Z a-z 0-9 . _ -)");
    }
    ensure!(
        name.starts_with(|c: char| c.is_ascii_alphanumeric()),
        "agent name {name:?} must start with a letter or digit"
    );
    ensure!(
        !matches!(name, "ca" | "collector") && !name.ends_with("-key"),
        "agent name {name:?} would clash with another file of the PKI (ca, collector, *-key)"
    );
    Ok(())
}

/// Writes the PKI into `out` (created if missing) for the given agent names.
///
/// Reuses `ca.pem` + `ca-key.pem` if both exist in `out`; collector and agent certificates are
/// always (re)issued.
pub fn generate(out: &Path, agents: &[String]) -> Result<Pki> {
    for name in agents {
        validate_agent_name(name)?;
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();

    let (ca, ca_reused) = load_or_create_ca(out, &mut written)?;

    let collector = leaf_params(
        "kestrel-collector",
        vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    issue(out, "collector", collector, &ca, &mut written)?;

    let mut seen = Vec::new();
    for name in agents {
        if seen.contains(name) {
            continue;
        }
        seen.push(name.clone());
        let uri = agent_spiffe_id(name);
        let params = leaf_params(
            name,
            vec![SanType::URI(uri.as_str().try_into()?)],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        issue(out, name, params, &ca, &mut written)?;
    }
    Ok(Pki { ca_reused, written })
}

fn load_or_create_ca(
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(Issuer<'static, KeyPair>, bool)> {
    let cert_path = out.join("ca.pem");
    let key_path = out.join("ca-key.pem");
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert_pem = fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let key_pem = fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
            check_key_matches(&cert_pem, &key)
                .with_context(|| format!("{} and {}", cert_path.display(), key_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                .with_context(|| format!("{}: not a CA certificate", cert_path.display()))?;
            Ok((issuer, true))
        }
        (false, false) => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            params.distinguished_name = distinguished_name("Kestrel development CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - BACKDATE;
            params.not_after = now + CA_VALIDITY;
            let cert = params.self_signed(&key)?;
            write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            written.push(cert_path);
            written.push(key_path);
            Ok((Issuer::new(params, key), false))
        }
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            bail!(
                "{} exists but {} does not; restore it, or remove {} to create a new CA",
                present.display(),
                missing.display(),
                present.display()
            )
        }
    }
}

/// Fails unless `key` is the private key of the certificate in `cert_pem`.
fn check_key_matches(cert_pem: &str, key: &KeyPair) -> Result<()> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    ensure!(
        cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        "the CA key does not belong to the CA certificate"
    );
    Ok(())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kestrel development");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn leaf_params(
    common_name: &str,
    subject_alt_names: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + LEAF_VALIDITY;
    params
}

/// Issues `stem.pem` and `stem-key.pem` in `out`, signed by `ca`.
fn issue(
    out: &Path,
    stem: &str,
    params: CertificateParams,
    ca: &Issuer<'_, KeyPair>,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params
        .signed_by(&key, ca)
        .with_context(|| format!("signing the certificate for {stem}"))?;
    let cert_path = out.join(format!("{stem}.pem"));
    let key_path = out.join(format!("{stem}-key.pem"));
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    written.push(cert_path);
    written.push(key_path);
    Ok(())
}

/// Writes `contents` to `path` with permission bits `mode`, also when the file already exists.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` only applies to new files; tighten an existing one before writing secrets into it.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{parse_x509_pem, X509Certificate};

    fn pem_der(path: &Path) -> Vec<u8> {
        let text = fs::read(path).unwrap();
        parse_x509_pem(&text).unwrap().1.contents
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        let san = cert
            .subject_alternative_name()
            .unwrap()
            .expect("certificate has a SAN extension");
        san.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::IPAddress(ip) => format!("IP:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn eku(cert: &X509Certificate<'_>) -> (bool, bool) {
        let eku = cert
            .extended_key_usage()
            .unwrap()
            .expect("certificate has an EKU extension")
            .value;
        (eku.server_auth, eku.client_auth)
    }

    fn agents(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn collector_and_agent_certificates_chain_to_the_ca_with_the_right_sans() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path(), &agents(&["node-1", "web.2"])).unwrap();
        assert!(!pki.ca_reused);
        assert_eq!(pki.written.len(), 2 + 2 + 2 * 2);

        let ca_der = pem_der(&dir.path().join("ca.pem"));
        let ca = parse(&ca_der);
        assert!(ca.is_ca());
        assert_eq!(ca.subject(), ca.issuer());

        let collector_der = pem_der(&dir.path().join("collector.pem"));
        let collector = parse(&collector_der);
        assert_eq!(collector.issuer(), ca.subject());
        collector
            .verify_signature(Some(ca.public_key()))
            .expect("collector certificate is signed by the CA");
        assert_eq!(
            sans(&collector),
            vec!["DNS:localhost".to_string(), "IP:[127, 0, 0, 1]".to_string()]
        );
        assert_eq!(eku(&collector), (true, false));
        assert!(!collector.is_ca());

        for name in ["node-1", "web.2"] {
            let der = pem_der(&dir.path().join(format!("{name}.pem")));
            let agent = parse(&der);
            assert_eq!(agent.issuer(), ca.subject());
            agent
                .verify_signature(Some(ca.public_key()))
                .expect("agent certificate is signed by the CA");
            assert_eq!(
                sans(&agent),
                vec![format!("URI:spiffe://kestrel.local/node/{name}")]
            );
            assert_eq!(eku(&agent), (false, true));
            let has_aki = agent.extensions().iter().any(|ext| {
                matches!(
                    ext.parsed_extension(),
                    ParsedExtension::AuthorityKeyIdentifier(_)
                )
            });
            assert!(has_aki, "agent certificate names its issuer key");
        }
    }

    #[test]
    fn key_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &agents(&["a"])).unwrap();
        for file in ["ca-key.pem", "collector-key.pem", "a-key.pem"] {
            let mode = fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn second_run_reuses_the_ca_and_new_agents_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &agents(&["first"])).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        let key_before = fs::read(dir.path().join("ca-key.pem")).unwrap();

        let pki = generate(dir.path(), &agents(&["second"])).unwrap();
        assert!(pki.ca_reused);
        assert!(!pki.written.contains(&dir.path().join("ca.pem")));
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        assert_eq!(fs::read(dir.path().join("ca-key.pem")).unwrap(), key_before);

        let ca_der = pem_der(&dir.path().join("ca.pem"));
        let ca = parse(&ca_der);
        for name in ["first", "second"] {
            let der = pem_der(&dir.path().join(format!("{name}.pem")));
            let agent = parse(&der);
            assert_eq!(agent.issuer(), ca.subject());
            agent
                .verify_signature(Some(ca.public_key()))
                .unwrap_or_else(|e| panic!("{name} does not chain to the CA: {e}"));
        }
    }

    #[test]
    fn half_a_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &agents(&[])).unwrap();
        fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        let err = generate(dir.path(), &agents(&["x"])).unwrap_err();
        assert!(format!("{err:#}").contains("ca-key.pem"), "{err:#}");
    }

    #[test]
    fn a_ca_key_from_another_ca_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        generate(one.path(), &[]).unwrap();
        generate(two.path(), &[]).unwrap();
        fs::copy(two.path().join("ca-key.pem"), one.path().join("ca-key.pem")).unwrap();
        let err = generate(one.path(), &agents(&["x"])).unwrap_err();
        assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
    }

    #[test]
    fn agent_names_are_validated() {
        for good in ["node1", "web-1.example.com", "a_b", "0"] {
            validate_agent_name(good).unwrap();
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "..",
            "-x",
            "ca",
            "collector",
            "x-key",
            "naïve",
        ] {
            assert!(validate_agent_name(bad).is_err(), "{bad:?} accepted");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(generate(dir.path(), &agents(&["ok", "../escape"])).is_err());
        assert!(
            !dir.path().join("ca.pem").exists(),
            "nothing written on a bad name"
        );
    }
}
