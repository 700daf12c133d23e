//! Field errors rendered exactly as Kubernetes' `k8s.io/apimachinery/pkg/util/validation/field`
//! (v0.34, the version CNPG v1.27 links) and `apierrors.NewInvalid` render them, because the
//! apiserver forwards those strings verbatim to clients and Federator matches on them.

use std::fmt;

use serde_json::{Value, json};

/// The error types CNPG's Cluster webhook uses (`field.Invalid`, `field.Forbidden`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Invalid,
    Forbidden,
}

impl ErrorType {
    /// `ErrorType.String()`: the words that appear in the message.
    pub fn description(self) -> &'static str {
        match self {
            ErrorType::Invalid => "Invalid value",
            ErrorType::Forbidden => "Forbidden",
        }
    }

    /// The `StatusCause.reason` (Go's `ErrorType` constant).
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Forbidden => "FieldValueForbidden",
        }
    }
}

/// The value an `Invalid` error reports, already in the form Go prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// A Go `string`, printed with `%q`.
    Str(String),
    /// Any other Go value, printed as its `json.Marshal` output (see [`super::gojson`]).
    Json(String),
}

/// One `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    /// The dotted path, e.g. `spec.replicaCluster.token`.
    pub field: String,
    /// Only `Invalid` carries a value; `Forbidden` prints none.
    pub bad_value: Option<BadValue>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: &str, value: BadValue, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Invalid,
            field: field.to_owned(),
            bad_value: Some(value),
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: &str, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Forbidden,
            field: field.to_owned(),
            bad_value: None,
            detail: detail.into(),
        }
    }

    /// `ErrorBody()`: the message without the field path, as in `StatusCause.message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.description().to_owned();
        if self.kind == ErrorType::Invalid {
            match &self.bad_value {
                Some(BadValue::Str(v)) => s = format!("{s}: {}", go_quote(v)),
                Some(BadValue::Json(v)) => s = format!("{s}: {v}"),
                None => s = format!("{s}: null"),
            }
        }
        if !self.detail.is_empty() {
            s = format!("{s}: {}", self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// `utilerrors.NewAggregate(errs).Error()` after `ErrorList.ToAggregate()`: duplicates dropped,
/// one message bare, several in brackets.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for message in errors.iter().map(ToString::to_string) {
        if !seen.contains(&message) {
            seen.push(message);
        }
    }
    match seen.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// `apierrors.NewInvalid(GroupKind{group, "Cluster"}, name, errs).Status()` as JSON: the status
/// the webhook returns; the apiserver prefixes its message with
/// `admission webhook "vcluster.cnpg.io" denied the request: `.
pub fn invalid_status(group: &str, name: &str, errors: &[FieldError]) -> Value {
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.kind.cause_type(), "message": e.body(), "field": e.field}))
        .collect();
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Cluster.{group} {} is invalid: {}", go_quote(name), aggregate(errors)),
        "reason": "Invalid",
        "details": {"name": name, "group": group, "kind": "Cluster", "causes": causes},
        "code": 422,
    })
}

/// Go's `strconv.Quote` (what `%q` prints for a string).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the
/// ASCII space; not controls, other spaces, or the common format characters.
fn go_printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_apimachinery() {
        let e = FieldError::invalid(
            "spec.replicaCluster.token",
            BadValue::Str("ab\"c".into()),
            "promotionToken is only allowed for primary clusters",
        );
        assert_eq!(
            e.to_string(),
            r#"spec.replicaCluster.token: Invalid value: "ab\"c": promotionToken is only allowed for primary clusters"#
        );
        let f = FieldError::forbidden("spec.replica.enabled", "cannot modify");
        assert_eq!(
            f.to_string(),
            "spec.replica.enabled: Forbidden: cannot modify"
        );
        let j = FieldError::invalid("spec.x", BadValue::Json(r#"{"a":1}"#.into()), "d");
        assert_eq!(j.body(), r#"Invalid value: {"a":1}: d"#);
    }

    #[test]
    fn aggregates_drop_duplicates_and_bracket_several() {
        let a = FieldError::forbidden("a", "x");
        let b = FieldError::forbidden("b", "y");
        assert_eq!(aggregate(std::slice::from_ref(&a)), "a: Forbidden: x");
        assert_eq!(aggregate(&[a.clone(), a.clone()]), "a: Forbidden: x");
        assert_eq!(aggregate(&[a, b]), "[a: Forbidden: x, b: Forbidden: y]");
    }

    #[test]
    fn invalid_status_has_the_422_shape() {
        let status = invalid_status(
            "postgresql.cnpg.io",
            "pg",
            &[FieldError::forbidden("a", "x")],
        );
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(
            status["message"],
            r#"Cluster.postgresql.cnpg.io "pg" is invalid: a: Forbidden: x"#
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueForbidden"
        );
    }

    #[test]
    fn quoting_matches_strconv_quote() {
        assert_eq!(go_quote("a\nb\\\u{1}é\u{AD}"), r#""a\nb\\\x01é\u00ad""#);
    }
}
