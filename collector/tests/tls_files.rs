//! Unusable certificate, key or CA files stop the collector with an error naming the file.

mod common;

use std::path::Path;

use common::{write, TestCa};
use kestrel_collector::ingress::tls::server_config;

struct Files {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca");
    let server = ca.server();
    Files {
        cert: write(dir.path(), "collector.pem", &server.cert_pem),
        key: write(dir.path(), "collector-key.pem", &server.key_pem),
        ca: write(dir.path(), "ca.pem", &ca.cert_pem),
        _dir: dir,
    }
}

fn error_for(cert: &Path, key: &Path, ca: &Path) -> String {
    server_config(cert, key, ca)
        .expect_err("config must be refused")
        .to_string()
}

#[test]
fn valid_files_build_an_mtls_config_offering_h2() {
    let f = files();
    let config = server_config(&f.cert, &f.key, &f.ca).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
}

#[test]
fn missing_certificate_file_is_named() {
    let f = files();
    let missing = f.cert.with_file_name("nope.pem");
    let err = error_for(&missing, &f.key, &f.ca);
    assert!(
        err.contains("nope.pem") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn certificate_file_without_certificate_is_named() {
    let f = files();
    // The key file holds no CERTIFICATE block.
    let err = error_for(&f.key, &f.key, &f.ca);
    assert!(
        err.contains("collector-key.pem") && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn invalid_key_file_is_named() {
    let f = files();
    let err = error_for(&f.cert, &f.cert, &f.ca);
    assert!(
        err.starts_with("private key file") && err.contains("collector.pem"),
        "{err}"
    );
}

#[test]
fn key_of_another_certificate_is_refused() {
    let f = files();
    let other = TestCa::new("other").server();
    let other_key = write(f.cert.parent().unwrap(), "other-key.pem", &other.key_pem);
    let err = error_for(&f.cert, &other_key, &f.ca);
    assert!(err.contains("other-key.pem"), "{err}");
}

#[test]
fn corrupt_client_ca_file_is_named() {
    let f = files();
    let corrupt = write(
        f.ca.parent().unwrap(),
        "corrupt-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let err = error_for(&f.cert, &f.key, &corrupt);
    assert!(err.contains("corrupt-ca.pem"), "{err}");
}
