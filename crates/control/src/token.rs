//! The deploy API's bearer token. On first start wedge creates one (256 random bits, hex, in
//! `DIR/api-token`, mode 0600) and says where it is; `--token-file` supplies one instead.
//! Requests are checked in constant time, so response timing does not leak the token.

use std::path::{Path, PathBuf};

/// The name of the token file in the data dir.
pub const TOKEN_FILE: &str = "api-token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file `{}`: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(
        "the token file `{}` is empty or not a single line of printable text; put one token (at least 16 characters) in it",
        path.display()
    )]
    Invalid { path: PathBuf },
    #[error("cannot create the token file `{}`: {reason}", path.display())]
    Create { path: PathBuf, reason: String },
}

pub struct ApiToken {
    secret: String,
    path: PathBuf,
}

/// Where the token came from, for the start-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    Created,
    Existing,
}

impl ApiToken {
    /// The token in `DIR/api-token`, created if there is none (or a crash left it empty).
    pub fn load_or_create(dir: &Path) -> Result<(Self, TokenOrigin), TokenError> {
        let path = dir.join(TOKEN_FILE);
        match Self::from_file(&path) {
            Ok(token) => return Ok((token, TokenOrigin::Existing)),
            Err(TokenError::Read { reason, .. }) if !path.exists() => {
                let _ = reason;
            }
            Err(TokenError::Invalid { .. })
                if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) => {}
            Err(error) => return Err(error),
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|error| TokenError::Create {
            path: path.clone(),
            reason: format!("no randomness from the operating system: {error}"),
        })?;
        let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &format!("{secret}\n")).map_err(|error| TokenError::Create {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        Ok((Self { secret, path }, TokenOrigin::Created))
    }

    /// A token supplied by the operator: the file's one line, without surrounding spaces.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::Read {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        let secret = text.trim();
        if secret.len() < 16
            || secret.lines().count() != 1
            || secret.chars().any(|c| c.is_control())
        {
            return Err(TokenError::Invalid {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            secret: secret.to_string(),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an `Authorization` header value carries this token (`Bearer <token>`).
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        constant_time_eq::constant_time_eq(presented, self.secret.as_bytes())
    }
}

/// Writes a file only its owner can read, whole or not at all.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    wedge_engine::durable::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (token, origin) = ApiToken::load_or_create(dir.path()).unwrap();
        assert_eq!(origin, TokenOrigin::Created);
        assert_eq!(token.secret.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, origin) = ApiToken::load_or_create(dir.path()).unwrap();
        assert_eq!(origin, TokenOrigin::Existing);
        assert_eq!(again.secret, token.secret);
        let header = format!("Bearer {}", token.secret);
        assert!(token.accepts(Some(header.as_bytes())));
        assert!(!token.accepts(Some(b"Bearer nope")));
        assert!(!token.accepts(Some(token.secret.as_bytes())));
        assert!(!token.accepts(None));
    }

    #[test]
    fn a_supplied_token_must_be_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            ApiToken::from_file(&path),
            Err(TokenError::Invalid { .. })
        ));
        std::fs::write(&path, "  a-long-enough-operator-token \n").unwrap();
        let token = ApiToken::from_file(&path).unwrap();
        assert!(token.accepts(Some(b"Bearer a-long-enough-operator-token")));
        assert!(matches!(
            ApiToken::from_file(&dir.path().join("missing")),
            Err(TokenError::Read { .. })
        ));
    }
}
