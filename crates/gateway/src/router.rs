//! Longest-prefix routing: `/hello` serves `/hello` and `/hello/...`, never `/helloworld`;
//! `/` serves everything no longer route claims.

use std::sync::Arc;

use crate::function::Function;

#[derive(Default)]
pub struct Router {
    /// Sorted by route length, longest first, so the first match is the longest.
    routes: Vec<Arc<Function>>,
}

impl Router {
    pub fn new(functions: Vec<Arc<Function>>) -> Self {
        let mut routes = functions;
        routes.sort_by_key(|f| std::cmp::Reverse(f.spec.route.len()));
        Self { routes }
    }

    pub fn route(&self, path: &str) -> Option<&Arc<Function>> {
        self.routes.iter().find(|f| matches(&f.spec.route, path))
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<Function>> + Clone {
        self.routes.iter()
    }
}

/// Whether `route` (no trailing slash, except the root) serves `path`.
pub fn matches(route: &str, path: &str) -> bool {
    if route == "/" {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn prefix_rules() {
        assert!(matches("/hello", "/hello"));
        assert!(matches("/hello", "/hello/"));
        assert!(matches("/hello", "/hello/a/b"));
        assert!(!matches("/hello", "/helloworld"));
        assert!(!matches("/hello", "/hell"));
        assert!(matches("/", "/anything"));
        assert!(matches("/a/b", "/a/b/c"));
        assert!(!matches("/a/b", "/a"));
    }
}
