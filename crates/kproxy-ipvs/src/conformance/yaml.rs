//! Reading the cases' YAML files into JSON values, and small accessors with readable errors.

use std::path::Path;

use serde_json::Value;

/// Reads a YAML file into a JSON value.
pub(crate) fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A string field.
pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {key:?}"))
}

/// A boolean field.
pub(crate) fn bool_field(v: &Value, key: &str) -> Result<bool, String> {
    v.get(key)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("missing boolean field {key:?}"))
}

/// An unsigned integer field.
pub(crate) fn u64_field(v: &Value, key: &str) -> Result<u64, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("missing number field {key:?}"))
}

/// A list of strings (numbers are written as text).
pub(crate) fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let list = v.as_array().ok_or("not a list")?;
    list.iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("{other} is not a string")),
        })
        .collect()
}
