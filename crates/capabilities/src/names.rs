//! The names state is addressed by: a store or database name ([`StateName`]) and the scope
//! (tenant) it lives in ([`Scope`]). Both become parts of file names (the embedded SQLite
//! backends: `DIR/<scope>/kv/<store>.db`) and of Redis keys (`wedge:kv:<scope>:<store>`), so
//! both are kept plain, by one rule: lowercase letters, digits, `-` and `_`, starting with a
//! letter or a digit. A name that passes can never climb out of its directory (`..`, `/`),
//! run into the next part of a key (`:`), or differ from another only by case (two files on a
//! case-insensitive disk, one in Redis).

use std::fmt;

/// The longest store or database name.
pub const MAX_STATE_NAME_LEN: usize = 63;
/// The longest scope: `fn-` and the longest function name (63).
pub const MAX_SCOPE_LEN: usize = 66;

/// A name that is not plain, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is not a valid {what} name: {reason}; use 1 to {max} characters of a-z, 0-9, - and _, starting with a letter or digit"
)]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub reason: &'static str,
    pub max: usize,
}

fn check(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    let invalid = |reason| NameError {
        what,
        name: name.to_string(),
        reason,
        max,
    };
    let Some(first) = name.bytes().next() else {
        return Err(invalid("it is empty"));
    };
    if name.len() > max {
        return Err(invalid("it is too long"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(invalid(
            "it does not start with a lowercase letter or a digit",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid("it has a character other than a-z, 0-9, - and _"));
    }
    Ok(())
}

/// A key-value store or SQL database name, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateName(String);

impl StateName {
    /// `what` names the kind of name in the message (`store`, `database`).
    pub fn new(what: &'static str, name: &str) -> Result<Self, NameError> {
        check(what, name, MAX_STATE_NAME_LEN)?;
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose state: `app` (every function of the app manifest) or `fn-NAME` (a function
/// deployed over the API, a tenant of its own), checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn new(name: &str) -> Result<Self, NameError> {
        check("scope", name, MAX_SCOPE_LEN)?;
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StateName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_others_say_why() {
        for good in ["default", "user_sessions-2", "0cache", &"a".repeat(63)] {
            assert!(StateName::new("store", good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("../x", "start"),
            ("a/b", "character"),
            ("a:b", "character"),
            ("Cache", "start"),
            ("cAche", "character"),
            ("a.b", "character"),
            ("-a", "start"),
            ("_a", "start"),
            ("cach\u{0435}", "character"),
        ] {
            let error = StateName::new("store", bad).unwrap_err();
            assert!(error.reason.contains(why), "{bad:?}: {error}");
            assert!(error.to_string().contains("1 to 63"), "{error}");
        }
        assert!(StateName::new("store", &"a".repeat(64)).is_err());
        assert!(Scope::new(&format!("fn-{}", "a".repeat(63))).is_ok());
        assert!(Scope::new(&"a".repeat(67)).is_err());
    }
}
