//! Problems found in objects: reported, and never allowed to affect other objects.

use std::fmt;

/// A problem with one field of one object. The object (or just the bad part of it) is
/// skipped; everything else is programmed as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelWarning {
    /// The object, e.g. `Service ns1/svc1`.
    pub object: String,
    /// The field, e.g. `spec.ports[1].port`.
    pub field: String,
    /// What is wrong and what kproxy did about it.
    pub message: String,
}

impl fmt::Display for ModelWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.object.escape_debug(),
            self.field,
            self.message.escape_debug()
        )
    }
}

/// Collects warnings for one object.
pub(crate) struct WarningSink<'a> {
    pub(crate) object: String,
    pub(crate) out: &'a mut Vec<ModelWarning>,
}

impl WarningSink<'_> {
    pub(crate) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.out.push(ModelWarning {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        });
    }
}
