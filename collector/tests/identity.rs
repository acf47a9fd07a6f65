//! Agent identity comes from the client certificate's SAN, and only from there.

mod common;

use common::{dns, spiffe, uri, TestCa};
use kestrel_collector::ingress::identity::{identity_from_cert, IdentityError};
use rcgen::SanType;

#[test]
fn spiffe_node_uri_is_the_identity() {
    let ca = TestCa::new("ca");
    let cert = ca.agent("web-1");
    let id = identity_from_cert(&cert.der).unwrap();
    assert_eq!(id.as_str(), "spiffe://kestrel.local/node/web-1");
}

#[test]
fn spiffe_uri_is_preferred_over_dns_names() {
    let ca = TestCa::new("ca");
    let cert = ca.issue(vec![dns("web-1.example.com"), uri(&spiffe("web-1"))], true);
    let id = identity_from_cert(&cert.der).unwrap();
    assert_eq!(id.as_str(), spiffe("web-1"));
}

#[test]
fn first_dns_name_is_the_identity_without_spiffe_uri() {
    let ca = TestCa::new("ca");
    let cert = ca.issue(
        vec![
            uri("https://example.com/not-an-identity"),
            dns("web-1.example.com"),
            dns("web-1-alias.example.com"),
        ],
        true,
    );
    let id = identity_from_cert(&cert.der).unwrap();
    assert_eq!(id.as_str(), "web-1.example.com");
}

#[test]
fn certificate_without_usable_san_has_no_identity() {
    let ca = TestCa::new("ca");
    let cert = ca.issue(
        vec![
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            dns("*.example.com"),
        ],
        true,
    );
    let err = identity_from_cert(&cert.der).unwrap_err();
    assert!(matches!(err, IdentityError::NoUsableSan { .. }), "{err}");
    assert!(err.to_string().contains("*.example.com"), "{err}");

    let bare = ca.issue(Vec::new(), true);
    assert!(matches!(
        identity_from_cert(&bare.der),
        Err(IdentityError::NoUsableSan { .. })
    ));
}

#[test]
fn garbage_is_not_a_certificate() {
    assert!(matches!(
        identity_from_cert(b"not a certificate"),
        Err(IdentityError::Parse(_))
    ));
}
