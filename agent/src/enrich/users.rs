//! User names for uids, looked up once per uid.

use std::collections::HashMap;

/// Caches uid -> user name lookups (from the host's user database).
#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, String>,
}

impl UserNames {
    /// The user name for `uid`, or the number as text when the host has no entry.
    pub fn name(&mut self, uid: u32) -> &str {
        self.names.entry(uid).or_insert_with(|| {
            nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| uid.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_fall_back_to_the_number() {
        let mut users = UserNames::default();
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(3_999_999_999), "3999999999");
    }
}
