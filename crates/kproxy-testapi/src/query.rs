//! The query parameters of list and watch requests.

use std::collections::BTreeMap;

/// The parameters kproxy's (and client-go's) list and watch calls send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// `watch=1` or `watch=true`.
    pub watch: bool,
    /// `resourceVersion`, as sent.
    pub resource_version: Option<String>,
    /// `labelSelector`, decoded.
    pub label_selector: Option<String>,
    /// `fieldSelector`, decoded.
    pub field_selector: Option<String>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `allowWatchBookmarks=true`.
    pub allow_bookmarks: bool,
    /// `limit`: the most objects one list page holds (0 or unset: all).
    pub limit: Option<usize>,
    /// `continue`: where the next list page starts.
    pub continue_token: Option<String>,
}

impl ListQuery {
    /// Reads a URL query string (without the `?`).
    pub fn parse(query: &str) -> Self {
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        let flag = |key: &str| params.get(key).is_some_and(|v| v == "1" || v == "true");
        ListQuery {
            watch: flag("watch"),
            resource_version: params.get("resourceVersion").cloned(),
            label_selector: params.get("labelSelector").cloned(),
            field_selector: params.get("fieldSelector").cloned(),
            timeout_seconds: params.get("timeoutSeconds").and_then(|t| t.parse().ok()),
            allow_bookmarks: flag("allowWatchBookmarks"),
            limit: params
                .get("limit")
                .and_then(|l| l.parse().ok())
                .filter(|l| *l > 0),
            continue_token: params.get("continue").cloned(),
        }
    }
}

/// Decodes `%XX` escapes and `+` (a space in form encoding); malformed escapes stay as
/// written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_client_go_watch_query() {
        let query = ListQuery::parse(
            "allowWatchBookmarks=true&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&resourceVersion=42&timeoutSeconds=290&watch=true",
        );
        assert!(query.watch && query.allow_bookmarks);
        assert_eq!(query.resource_version.as_deref(), Some("42"));
        assert_eq!(query.timeout_seconds, Some(290));
        assert_eq!(
            query.label_selector.as_deref(),
            Some("!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name")
        );
    }

    #[test]
    fn field_selector_and_watch_one() {
        let query = ListQuery::parse("fieldSelector=metadata.name%3Dnode-a&watch=1");
        assert!(query.watch);
        assert_eq!(
            query.field_selector.as_deref(),
            Some("metadata.name=node-a")
        );
        assert_eq!(ListQuery::parse("").resource_version, None);
        let page = ListQuery::parse("limit=500&continue=7%3Ans%2Fweb");
        assert_eq!(page.limit, Some(500));
        assert_eq!(page.continue_token.as_deref(), Some("7:ns/web"));
        assert_eq!(ListQuery::parse("limit=0").limit, None);
    }

    #[test]
    fn malformed_escapes_are_kept() {
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
    }
}
