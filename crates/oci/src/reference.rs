//! Image references: `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, with an optional `oci://` in
//! front (how an app manifest names a function in a registry).
//!
//! The grammar is docker's (distribution's `reference` package), with one difference: the
//! registry must be written. `ghcr.io/acme/hello:1` and `127.0.0.1:5000/hello:1` are
//! references; `acme/hello` is refused instead of silently meaning Docker Hub, because a
//! function that is pulled from the wrong registry runs someone else's code.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Where an artifact is: a registry, a repository in it, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A reference wedge cannot use; the message says which part is wrong.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a registry reference: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// Docker Hub's names: references say `docker.io`, its API lives elsewhere.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl Reference {
    /// The registry as written (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry's API is reached at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository, pinned to `digest` (the tag is kept, for messages).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag).map_err(|reason| ReferenceError {
            input: tag.to_string(),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// What the manifest endpoint is asked for: the digest when there is one (so a tag that
    /// moved in between cannot change what is fetched), else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The registry's host without its port, for loopback checks and config.json keys.
    pub fn host_name(&self) -> &str {
        host_without_port(&self.registry)
    }
}

/// `host` without a `:port` (and without brackets around an IPv6 address).
pub(crate) fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        let text = input.strip_prefix("oci://").unwrap_or(input);
        if text.contains("://") {
            return Err(error(
                "write it without a scheme, as REGISTRY/REPOSITORY:TAG (the scheme is chosen by the registry: HTTPS, or plain HTTP on loopback and with --insecure-registry)".into(),
            ));
        }
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (
                name,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(|e| error(format!("its digest is wrong: {}", e.reason)))?,
                ),
            ),
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (an earlier `:` is the registry's port).
        let last_slash = name.rfind('/');
        let (name, tag) = match name.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&name[..colon], Some(&name[colon + 1..]))
            }
            _ => (name, None),
        };
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(error(format!(
                "it names no registry; write REGISTRY/REPOSITORY:TAG, e.g. ghcr.io/{name}:1 or 127.0.0.1:5000/{name}:1"
            )));
        };
        if !looks_like_registry(registry) {
            return Err(error(format!(
                "`{registry}` is not a registry host (one has a `.`, a `:port` or is `localhost`); write the registry first, e.g. ghcr.io/{name} or docker.io/{name}"
            )));
        }
        check_repository(repository).map_err(error)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(error)?;
        }
        let mut repository = repository.to_string();
        // Docker Hub keeps official images under `library/`.
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            // Docker's default: a bare name means `latest`.
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }
}

fn looks_like_registry(host: &str) -> bool {
    host.contains('.') || host.contains(':') || host == "localhost"
}

/// Distribution's grammar: `/`-separated components of lowercase letters and digits, joined
/// inside a component by `.`, `_`, `__` or runs of `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("its repository is empty".into());
    }
    if repository.len() > 255 {
        return Err("its repository is longer than 255 characters".into());
    }
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && component
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && !component.contains("..")
            && !component.contains("___");
        if !valid {
            return Err(format!(
                "its repository part `{component}` is not lowercase letters and digits joined by `.`, `_` or `-`"
            ));
        }
    }
    Ok(())
}

/// A tag is up to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "its tag `{tag}` is not 1 to 128 of A-Z, a-z, 0-9, `_`, `.` and `-` (not starting with `.` or `-`)"
        ))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn registry_port_tag_and_digest() {
        let r = parse("127.0.0.1:5000/fns/hello:v1");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.host_name(), "127.0.0.1");
        assert_eq!(r.repository(), "fns/hello");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_key(), "v1");

        let hex = "a".repeat(64);
        let r = parse(&format!("oci://ghcr.io/acme/hello@sha256:{hex}"));
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_key(), format!("sha256:{hex}"));
        assert_eq!(r.to_string(), format!("ghcr.io/acme/hello@sha256:{hex}"));

        let r = parse("localhost:5000/hello");
        assert_eq!(r.tag(), Some("latest"));
        let r = parse("[::1]:5000/hello:x");
        assert_eq!(r.host_name(), "::1");
    }

    #[test]
    fn docker_hub_names() {
        let r = parse("docker.io/hello:1");
        assert_eq!(r.repository(), "library/hello");
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        for (bad, says) in [
            ("hello", "names no registry"),
            ("acme/hello:1", "is not a registry host"),
            ("https://ghcr.io/a/b", "without a scheme"),
            ("ghcr.io/Acme/hello", "lowercase"),
            ("ghcr.io/a/hello:-x", "its tag"),
            ("ghcr.io/a/hello@sha256:12", "its digest is wrong"),
            ("ghcr.io/", "repository is empty"),
        ] {
            let error = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
