//! Label and field selectors as the API server reads them from `labelSelector` and
//! `fieldSelector`, matched against objects held as JSON.

use serde_json::Value;

/// A selector that could not be parsed; the server answers it with `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector text as sent.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            LabelRequirement::Exists(key) => value(key).is_some(),
            LabelRequirement::DoesNotExist(key) => value(key).is_none(),
            LabelRequirement::In(key, values) => {
                value(key).is_some_and(|v| values.iter().any(|w| w == v))
            }
            LabelRequirement::NotIn(key, values) => {
                !value(key).is_some_and(|v| values.iter().any(|w| w == v))
            }
        }
    }
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses `a`, `!a`, `a=b`, `a==b`, `a!=b`, `a in (b,c)` and `a notin (b,c)`, joined by
    /// commas. An empty text selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let error = |reason: &str| SelectorError {
            selector: text.to_string(),
            reason: reason.to_string(),
        };
        let mut requirements = Vec::new();
        for term in split_terms(text).map_err(|r| error(&r))? {
            requirements.push(parse_label_term(&term).map_err(|r| error(&r))?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object (as JSON) carries labels that satisfy the selector.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Splits on commas that are not inside parentheses; drops empty terms.
fn split_terms(text: &str) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced `)`")?,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err("unbalanced `(`".into());
    }
    terms.push(current);
    Ok(terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(valid_key(key)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotIn(
            valid_key(key)?,
            vec![value.trim().to_string()],
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::In(
            valid_key(key)?,
            vec![value.trim().to_string()],
        ));
    }
    if let Some((key, set)) = term.split_once(" notin ") {
        return Ok(LabelRequirement::NotIn(valid_key(key)?, parse_set(set)?));
    }
    if let Some((key, set)) = term.split_once(" in ") {
        return Ok(LabelRequirement::In(valid_key(key)?, parse_set(set)?));
    }
    Ok(LabelRequirement::Exists(valid_key(term)?))
}

fn parse_set(set: &str) -> Result<Vec<String>, String> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found {set:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn valid_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if key.is_empty() || !key.chars().all(allowed) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

/// The fields a field selector may name (the ones every resource supports).
const SELECTABLE_FIELDS: [&str; 2] = ["metadata.name", "metadata.namespace"];

/// A parsed `fieldSelector` over `metadata.name` and `metadata.namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, value, wanted equal)
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value`, joined by commas.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let error = |reason: String| SelectorError {
            selector: text.to_string(),
            reason,
        };
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(error(format!("term {term:?} has no operator")));
            };
            let field = field.trim();
            if !SELECTABLE_FIELDS.contains(&field) {
                return Err(error(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object (as JSON) satisfies the selector.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, value, equal)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn kube_proxy_selector_excludes_headless_and_foreign_proxies() {
        let selector = LabelSelector::parse(
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
        )
        .expect("valid");
        assert!(selector.matches(&labelled(json!({"app": "web"}))));
        assert!(selector.matches(&json!({"metadata": {"name": "unlabelled"}})));
        assert!(!selector.matches(&labelled(json!({"service.kubernetes.io/headless": ""}))));
        assert!(!selector.matches(&labelled(
            json!({"service.kubernetes.io/service-proxy-name": "x"})
        )));
    }

    #[test]
    fn equality_and_set_requirements() {
        let selector = LabelSelector::parse("app=web, tier in (a, b),env!=prod").expect("valid");
        assert!(selector.matches(&labelled(json!({"app": "web", "tier": "b"}))));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "c"}))));
        assert!(!selector.matches(&labelled(json!({"app": "web", "tier": "a", "env": "prod"}))));
        let notin = LabelSelector::parse("tier notin (a)").expect("valid");
        assert!(notin.matches(&labelled(json!({}))));
        assert!(!notin.matches(&labelled(json!({"tier": "a"}))));
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        assert!(LabelSelector::parse("tier in (a").is_err());
        assert!(LabelSelector::parse("bad key").is_err());
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let selector = FieldSelector::parse("metadata.name=a").expect("valid");
        assert!(selector.matches(&labelled(json!({}))));
        assert!(!FieldSelector::parse("metadata.namespace!=ns")
            .expect("valid")
            .matches(&labelled(json!({}))));
        let err = FieldSelector::parse("spec.clusterIP=None").expect_err("unsupported");
        assert!(err.to_string().contains("spec.clusterIP"), "{err}");
    }
}
