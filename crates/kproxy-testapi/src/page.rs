//! Lists in pages, as the API server serves them with `limit` and `continue`: every page
//! shows the objects as they were at the first page's resourceVersion (the changes made
//! since are undone from the history), and a continue token whose version has been
//! compacted away is `410 Gone`.

use crate::filter::Filter;
use crate::history::{Expired, History, ObjectKey};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

/// One page of a list: the objects as they are now are borrowed from the history, the
/// few shown as they were before a later change are owned.
#[derive(Debug)]
pub(crate) struct Page<'a> {
    /// The objects, in key order.
    pub items: Vec<Cow<'a, Value>>,
    /// The resourceVersion the whole list shows.
    pub resource_version: u64,
    /// Where the next page starts, when there is one.
    pub continue_token: Option<String>,
}

/// Why a page cannot be served.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The continue token is not one this server wrote.
    BadToken(String),
    /// The list's resourceVersion has been compacted away.
    Expired(Expired),
}

/// The page of objects matching `filter` after the token's position (from the start
/// without one), at most `limit` of them (all without a limit).
pub(crate) fn list_page<'a>(
    history: &'a History,
    filter: &Filter,
    limit: Option<usize>,
    token: Option<&str>,
) -> Result<Page<'a>, PageError> {
    let (version, after) = match token.filter(|t| !t.is_empty()) {
        None => (history.resource_version(), None),
        Some(token) => parse_token(token, filter)?,
    };
    let undone = objects_before(history, filter, version)?;
    let first = ObjectKey {
        resource: filter.resource,
        namespace: String::new(),
        name: String::new(),
    };
    let lower = match &after {
        Some(key) => Bound::Excluded(key),
        None => Bound::Included(&first),
    };
    let current = history
        .objects_in((lower, Bound::Unbounded))
        .take_while(|(key, _)| key.resource == filter.resource)
        .map(|(key, value)| (Cow::Borrowed(key), Some(Cow::Borrowed(value))));
    let older = undone
        .range::<ObjectKey, _>((lower, Bound::Unbounded))
        .map(|(key, value)| (Cow::Owned(key.clone()), value.clone().map(Cow::Owned)));
    let mut page = Page {
        items: Vec::new(),
        resource_version: version,
        continue_token: None,
    };
    let mut last: Option<Cow<'a, ObjectKey>> = None;
    for (key, value) in merged(current, older) {
        let Some(value) = value.filter(|v| filter.matches(v)) else {
            continue;
        };
        if limit.is_some_and(|limit| page.items.len() >= limit) {
            page.continue_token = last.map(|key| write_token(version, &key));
            break;
        }
        page.items.push(value);
        last = Some(key);
    }
    Ok(page)
}

/// The objects of the filter's resource changed after `version`, as they were at
/// `version` (`None`: it did not exist then).
fn objects_before(
    history: &History,
    filter: &Filter,
    version: u64,
) -> Result<BTreeMap<ObjectKey, Option<Value>>, PageError> {
    let changes = history.changes_since(version).map_err(PageError::Expired)?;
    let mut before = BTreeMap::new();
    for change in changes.iter().filter(|c| c.resource == filter.resource) {
        let Some(key) = change.key() else {
            continue;
        };
        before.entry(key).or_insert_with(|| change.old.clone());
    }
    Ok(before)
}

/// Merges two key-ordered sequences; where both have a key, the second one's entry wins.
fn merged<K: Ord, V>(
    first: impl Iterator<Item = (K, Option<V>)>,
    second: impl Iterator<Item = (K, Option<V>)>,
) -> impl Iterator<Item = (K, Option<V>)> {
    let mut first = first.peekable();
    let mut second = second.peekable();
    std::iter::from_fn(move || {
        let order = match (first.peek(), second.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => first.next(),
            Ordering::Greater => second.next(),
            Ordering::Equal => {
                first.next();
                second.next()
            }
        }
    })
}

fn write_token(version: u64, key: &ObjectKey) -> String {
    format!("{version}:{}/{}", key.namespace, key.name)
}

fn parse_token(token: &str, filter: &Filter) -> Result<(u64, Option<ObjectKey>), PageError> {
    let bad = || PageError::BadToken(format!("invalid continue token {token:?}"));
    let (version, position) = token.split_once(':').ok_or_else(bad)?;
    let version = version.parse().map_err(|_| bad())?;
    let (namespace, name) = position.split_once('/').ok_or_else(bad)?;
    let key = ObjectKey {
        resource: filter.resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    Ok((version, Some(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceType;
    use crate::selector::{FieldSelector, LabelSelector};
    use serde_json::json;

    fn service(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}})
    }

    fn filter() -> Filter {
        Filter {
            resource: ResourceType::Services,
            namespace: None,
            labels: LabelSelector::parse("").expect("empty selector"),
            fields: FieldSelector::parse("").expect("empty selector"),
        }
    }

    fn names<'p>(page: &'p Page<'_>) -> Vec<&'p str> {
        page.items
            .iter()
            .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .collect()
    }

    fn page<'a>(history: &'a History, token: Option<&str>) -> Page<'a> {
        list_page(history, &filter(), Some(2), token).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn pages_show_the_first_pages_version() {
        let mut history = History::new();
        for name in ["a", "b", "c", "d", "e"] {
            history.apply(service(name)).expect("apply");
        }
        let first = page(&history, None);
        assert_eq!(names(&first), ["a", "b"]);
        let token = first.continue_token.clone().expect("more");
        let first_version = first.resource_version;
        history.delete(&ObjectKey {
            resource: ResourceType::Services,
            namespace: "ns".into(),
            name: "c".into(),
        });
        history.apply(service("cc")).expect("apply");
        let second = page(&history, Some(&token));
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(second.resource_version, first_version);
        let third = page(&history, second.continue_token.as_deref());
        assert_eq!(names(&third), ["e"]);
        assert_eq!(third.continue_token, None);
        let fresh = list_page(&history, &filter(), None, None).expect("all");
        assert_eq!(names(&fresh), ["a", "b", "cc", "d", "e"]);
        history.compact();
        assert!(matches!(
            list_page(&history, &filter(), Some(2), Some(&token)),
            Err(PageError::Expired(_))
        ));
        assert!(matches!(
            list_page(&history, &filter(), Some(2), Some("x")),
            Err(PageError::BadToken(_))
        ));
    }

    #[test]
    fn a_full_last_page_has_no_token() {
        let mut history = History::new();
        for name in ["a", "b"] {
            history.apply(service(name)).expect("apply");
        }
        assert_eq!(page(&history, None).continue_token, None);
    }
}
