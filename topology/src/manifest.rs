//! Reading manifests from text: multi-document YAML holding `DistributedTopology` and CNPG
//! `Cluster` documents. Errors carry the file name and the absolute line and column, since a
//! human will open that file next. (Pure: the caller reads the file.)

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::DistributedTopology;
use crate::cnpg::Cluster;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based line of the document's first line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The documents of one or more files, by kind.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub topologies: Vec<(Origin, DistributedTopology)>,
    pub clusters: Vec<(Origin, Cluster)>,
    /// Documents of other kinds, skipped (kind and where).
    pub skipped: Vec<(Origin, String)>,
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Manifests {
    /// Parses every document of `text` (named `file` in errors) and adds it. All documents are
    /// tried; every error is returned.
    pub fn add(&mut self, file: &str, text: &str) -> Result<(), Vec<ManifestError>> {
        let mut errors = Vec::new();
        for (first_line, doc) in split_documents(text) {
            let origin = Origin {
                file: file.to_owned(),
                line: first_line,
            };
            if let Err(e) = self.add_document(&origin, doc) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn add_document(&mut self, origin: &Origin, doc: &str) -> Result<(), ManifestError> {
        let value: Value = parse(origin, doc)?;
        if value.is_null() {
            return Ok(());
        }
        let kind = value["kind"].as_str().unwrap_or_default();
        let group = value["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default();
        match (group, kind) {
            ("federator.dev", "DistributedTopology") => {
                self.topologies.push((origin.clone(), parse(origin, doc)?));
            }
            ("postgresql.cnpg.io", "Cluster") => {
                self.clusters.push((origin.clone(), parse(origin, doc)?));
            }
            _ if kind.is_empty() => {
                return Err(ManifestError {
                    file: origin.file.clone(),
                    line: origin.line,
                    column: 1,
                    message: "document has no `kind`".into(),
                });
            }
            _ => self.skipped.push((
                origin.clone(),
                format!("{}/{kind}", value["apiVersion"].as_str().unwrap_or("?")),
            )),
        }
        Ok(())
    }
}

fn parse<T: DeserializeOwned>(origin: &Origin, doc: &str) -> Result<T, ManifestError> {
    serde_saphyr::from_str(doc).map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
        let text = e.without_snippet().to_string();
        // serde-saphyr prefixes "error: line N column M: " relative to the document; the
        // absolute position is reported separately.
        let message = text
            .strip_prefix("error: ")
            .and_then(|rest| {
                rest.split_once(": ")
                    .filter(|(pos, _)| pos.starts_with("line "))
            })
            .map_or(text.as_str(), |(_, msg)| msg);
        // Some messages repeat the document-relative position at the end; drop it too.
        let message = match message.rsplit_once(" at line ") {
            Some((msg, pos)) if pos.contains(", column ") => msg,
            _ => message,
        }
        .to_owned();
        ManifestError {
            file: origin.file.clone(),
            line: origin.line + line - 1,
            column,
            message,
        }
    })
}

/// Splits YAML text at document markers (`---` at the start of a line), keeping each
/// document's first line number so errors can be made absolute.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let marker = line.trim_end();
        if marker == "---" || marker.starts_with("--- ") || marker == "..." {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "\
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: a, namespace: db}
spec:
  instances: 1
---
# a comment only document is skipped
---
apiVersion: federator.dev/v1alpha1
kind: DistributedTopology
metadata: {name: t}
spec:
  primary: a
  shape: {star: {}}
  members:
    - {name: a, cluster: c1, namespace: db}
    - {name: b, cluster: c2, namespace: db}
";

    #[test]
    fn reads_documents_by_kind() {
        let mut m = Manifests::default();
        m.add("x.yaml", TWO_DOCS).unwrap();
        assert_eq!(m.clusters.len(), 1);
        assert_eq!(m.topologies.len(), 1);
        assert_eq!(m.topologies[0].0.line, 9);
        assert_eq!(m.topologies[0].1.spec.members[1].name, "b");
    }

    #[test]
    fn syntax_and_type_errors_carry_absolute_lines() {
        let broken = TWO_DOCS.replace("  primary: a", "  primary: [a");
        let errors = Manifests::default().add("x.yaml", &broken).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "x.yaml");
        assert!((13..=14).contains(&errors[0].line), "{errors:?}");
        assert!(!errors[0].message.contains("line"), "{errors:?}");

        let wrong_type = TWO_DOCS.replace("instances: 1", "instances: many");
        let errors = Manifests::default().add("y.yaml", &wrong_type).unwrap_err();
        assert_eq!(errors[0].line, 5, "{errors:?}");
        assert!(!errors[0].message.starts_with("error:"), "{errors:?}");
    }
}
