//! Longest-prefix routing: `/hello` serves `/hello` and `/hello/...`, never `/helloworld`;
//! `/` serves everything no longer route claims.

use std::sync::Arc;

use wedge_host::Function;

/// One route: its prefix and the function serving it.
pub struct Route {
    pub prefix: String,
    pub function: Arc<Function>,
}

#[derive(Default)]
pub struct Router {
    /// Sorted by prefix length, longest first, so the first match is the longest.
    routes: Vec<Route>,
    /// Every function published, routed or not (for metrics).
    functions: Vec<Arc<Function>>,
}

impl Router {
    /// The routes of the functions that have an HTTP trigger.
    pub fn new(functions: &[Arc<Function>]) -> Self {
        let mut routes: Vec<Route> = functions
            .iter()
            .filter_map(|function| {
                function.spec.route().map(|prefix| Route {
                    prefix: prefix.to_string(),
                    function: function.clone(),
                })
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Self {
            routes,
            functions: functions.to_vec(),
        }
    }

    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| matches(&route.prefix, path))
    }

    /// Every published function, in the order published.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<Function>> + Clone {
        self.functions.iter()
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
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
