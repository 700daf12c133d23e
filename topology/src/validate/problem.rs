//! One validation finding, and the error that carries all of them.

use std::fmt;

use crate::observed::ObservedMember;

/// One thing wrong, with its location and a fix a human can apply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: a field path in the topology (`spec.members[1].name`) or in a CNPG Cluster
    /// (`Cluster databases/pg16-eu-central: spec.replica.source`).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    pub fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n    fix: {}", self.path, self.message, self.fix)
    }
}

/// Every problem found, in a stable order (the order the rules ran in).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{n} problem{}:", if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Collects problems; turns into `Ok(value)` only if none were found.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn push(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Problem::new(path, message, fix));
    }

    pub(crate) fn extend(&mut self, other: Vec<Problem>) {
        self.0.extend(other);
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ValidationError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }
}

/// Where a problem of member `m`'s own Cluster is: `Cluster <namespace>/<name>`.
pub(super) fn cluster_path(m: &ObservedMember) -> String {
    format!(
        "Cluster {}/{}",
        m.namespace.as_deref().unwrap_or("?"),
        m.cluster_name
    )
}
