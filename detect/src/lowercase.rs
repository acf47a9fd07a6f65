//! Case folding shared by rule literals and event values, so that case-insensitive comparison
//! sees the same mapping on both sides.

/// Appends the lowercase form of `s` to `out`, one character at a time (the same mapping for
/// rule literals and event values, so case-insensitive comparison is consistent).
pub(crate) fn lowercase_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        out.extend(s.chars().flat_map(char::to_lowercase));
    }
}

/// `s` lowercased with [`lowercase_into`].
pub(crate) fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lowercase_into(s, &mut out);
    out
}

/// True when lowercasing changes `s` (most event values are already lowercase).
pub(crate) fn needs_lowercasing(s: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut high = 0;
    let mut upper = 0;
    // Eight bytes at a time: for ASCII bytes (high bit clear) adding 0x80 - b'A' sets the high
    // bit exactly for bytes >= b'A', adding 0x80 - b'Z' - 1 for bytes > b'Z', without carries
    // between bytes. Non-ASCII input is answered below character by character.
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        high |= x;
        upper |= x.wrapping_add(ONES * u64::from(0x80 - b'A'))
            & !x.wrapping_add(ONES * u64::from(0x80 - b'Z' - 1));
    }
    let mut tail_upper = false;
    for &b in chunks.remainder() {
        high |= u64::from(b);
        tail_upper |= b.is_ascii_uppercase();
    }
    if high & HIGH == 0 {
        return tail_upper || upper & HIGH != 0;
    }
    s.chars().any(|c| c.to_lowercase().ne(std::iter::once(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercasing_handles_non_ascii() {
        assert!(needs_lowercasing("ÄBC"));
        assert!(!needs_lowercasing("äbc/ß"));
        assert!(!needs_lowercasing("/usr/bin/cat"));
        assert!(!needs_lowercasing(
            "/usr/bin/python3.11 -m pip list --outdated @[`{"
        ));
        assert!(needs_lowercasing(
            "/usr/bin/python3.11 -m pip list --outdatedZ"
        ));
        assert!(needs_lowercasing(
            "/usr/bin/python3.11 -m pip liSt --outdated"
        ));
        assert!(needs_lowercasing("/usr/bin/A"));
        assert!(needs_lowercasing("/usr/bin/python3.11 ÄBC"));
        assert!(!needs_lowercasing("/usr/bin/python3.11 äbc"));
        assert_eq!(lowercase("ÄBC/X"), "äbc/x");
    }
}
