//! One-time join tokens for VMs: `kestrel-collector agents token create --node NAME` makes
//! one, the store keeps only its SHA-256, and the first enrolment that presents it for that
//! node consumes it.

use sha2::{Digest, Sha256};

/// Prefix of every join token, so one is recognisable in a file or a log redaction rule.
pub const PREFIX: &str = "kestrel-join-";
/// Largest join token accepted.
pub const MAX_TOKEN_BYTES: usize = 256;

/// A new random join token (256 bits from the system's CSPRNG, URL-safe base64).
pub fn generate() -> Result<String, ring::error::Unspecified> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The hash a token is stored and looked up by (lower-case hex SHA-256 of the trimmed token).
pub fn hash(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed_without_surrounding_whitespace() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() < MAX_TOKEN_BYTES);
        assert_eq!(hash(&a), hash(&format!("{a}\n")));
        assert_eq!(hash(&a).len(), 64);
    }
}
