//! The promotion-token admission check with Go's error texts.
//!
//! CNPG decodes with `base64.StdEncoding` and `encoding/json`, and their errors end up in the
//! rejection message (`invalid promotion token (Base64 decoding failed): illegal base64 data at
//! input byte 4`). The Rust decoders word (and partly decide) differently, so this module
//! reproduces Go's decisions and wording for the cases a client can plausibly send; the field
//! checks reuse [`PromotionToken::validate`], whose texts are CNPG's.

use serde_json::Value;
use topology::token::PromotionToken;

/// Why a token is rejected, rendered as CNPG's webhook renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// `Invalid promotionToken format: <err>`
    Format(String),
    /// `Invalid promotionToken content: <err>`
    Content(String),
}

impl TokenRejection {
    pub fn detail(&self) -> String {
        match self {
            TokenRejection::Format(e) => format!("Invalid promotionToken format: {e}"),
            TokenRejection::Content(e) => format!("Invalid promotionToken content: {e}"),
        }
    }
}

/// `ParsePgControldataToken` then `IsValid`, as CNPG v1.27 does them.
pub fn check(token: &str) -> Result<(), TokenRejection> {
    let bytes = go_base64_decode(token.as_bytes()).map_err(|offset| {
        TokenRejection::Format(format!(
            "invalid promotion token (Base64 decoding failed): illegal base64 data at input byte {offset}"
        ))
    })?;
    let content = go_json_token(&bytes).map_err(|e| {
        TokenRejection::Format(format!(
            "invalid promotion token (JSON decoding failed): {e}"
        ))
    })?;
    content
        .validate()
        .map_err(|e| TokenRejection::Content(e.to_string()))
}

/// Go's `base64.StdEncoding.DecodeString`: padding required, `\r`/`\n` skipped, trailing bits
/// ignored. The error is the offset Go's `CorruptInputError` reports.
fn go_base64_decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let skip_newlines = |mut i: usize| {
        while i < src.len() && (src[i] == b'\n' || src[i] == b'\r') {
            i += 1;
        }
        i
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        let mut quantum = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        let mut finished = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // An incomplete quantum without padding.
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = sextet(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" expected; the first '=' is consumed.
                si = skip_newlines(si);
                if si == src.len() {
                    return Err(src.len());
                }
                if src[si] != b'=' {
                    return Err(si - 1);
                }
                si += 1;
            }
            si = skip_newlines(si);
            if si < src.len() {
                return Err(si);
            }
            len = j;
            finished = true;
            break;
        }
        let v = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if finished {
            return Ok(out);
        }
    }
}

/// The six token fields: (Go field name for errors, JSON name).
const FIELDS: [&str; 6] = [
    "latestCheckpointTimelineID",
    "redoWalFile",
    "databaseSystemIdentifier",
    "latestCheckpointREDOLocation",
    "timeOfLatestCheckpoint",
    "operatorVersion",
];

/// `json.Unmarshal(bytes, &PgControldataTokenContent{})` with Go's error texts: syntax errors
/// first (Go scans the whole input before decoding), then the first type mismatch. Keys match
/// case-insensitively, unknown keys and `null`s are ignored, as in Go.
fn go_json_token(bytes: &[u8]) -> Result<PromotionToken, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| go_syntax_error(bytes, &e))?;
    const GO_TYPE: &str = "utils.PgControldataTokenContent";
    let map = match value {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type {GO_TYPE}",
                go_kind(&other)
            ));
        }
    };
    let mut values: [String; 6] = Default::default();
    let mut first_error = None;
    for (key, v) in &map {
        let Some(index) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(key)) else {
            continue;
        };
        match v {
            Value::String(s) => values[index] = s.clone(),
            Value::Null => {}
            other => {
                first_error.get_or_insert_with(|| {
                    format!(
                        "json: cannot unmarshal {} into Go struct field PgControldataTokenContent.{} of type string",
                        go_kind(other),
                        FIELDS[index]
                    )
                });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let [tl, wal, sysid, lsn, time, version] = values;
    Ok(PromotionToken {
        latest_checkpoint_timeline_id: tl,
        redo_wal_file: wal,
        database_system_identifier: sysid,
        latest_checkpoint_redo_location: lsn,
        time_of_latest_checkpoint: time,
        operator_version: version,
    })
}

fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Go's `SyntaxError` text for the common cases; serde_json's text otherwise.
fn go_syntax_error(bytes: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".to_owned();
    }
    let first = bytes.iter().position(|b| !b" \t\r\n".contains(b));
    let value_start = |b: u8| b"{[\"-0123456789tfn".contains(&b);
    match first {
        Some(i) if !value_start(bytes[i]) => {
            format!(
                "invalid character {} looking for beginning of value",
                go_char(bytes, i)
            )
        }
        _ => {
            let message = e.to_string();
            let context = if message.starts_with("trailing characters") {
                "after top-level value"
            } else if message.starts_with("expected value") {
                "looking for beginning of value"
            } else {
                return message;
            };
            match offset_of(bytes, e.line(), e.column()) {
                Some(i) => format!("invalid character {} {context}", go_char(bytes, i)),
                None => message,
            }
        }
    }
}

/// The byte at serde_json's 1-based (line, column).
fn offset_of(bytes: &[u8], line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += bytes[start..].iter().position(|b| *b == b'\n')? + 1;
    }
    let i = start + column.checked_sub(1)?;
    (i < bytes.len()).then_some(i)
}

/// Go's `quoteChar`: the character in single quotes, escaped like `strconv.Quote`.
fn go_char(bytes: &[u8], i: usize) -> String {
    let c = std::str::from_utf8(&bytes[i..])
        .ok()
        .or_else(|| std::str::from_utf8(&bytes[i..(i + 1).min(bytes.len())]).ok())
        .and_then(|s| s.chars().next())
        .unwrap_or('\u{FFFD}');
    match c {
        '\'' => r"'\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c => {
            let quoted = super::field::go_quote(&c.to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn base64_offsets_match_go() {
        assert_eq!(go_base64_decode(b"YWJj").unwrap(), b"abc");
        assert_eq!(go_base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(go_base64_decode(b"YWI=").unwrap(), b"ab");
        assert_eq!(go_base64_decode(b"YW\nJj").unwrap(), b"abc");
        assert_eq!(go_base64_decode(b"YWJ!"), Err(3));
        assert_eq!(go_base64_decode(b"YQ"), Err(0));
        assert_eq!(go_base64_decode(b"YWJjZ"), Err(4));
        assert_eq!(go_base64_decode(b"YQ=="), Ok(b"a".to_vec()));
        assert_eq!(go_base64_decode(b"YQ="), Err(3));
        assert_eq!(go_base64_decode(b"YQ==YQ=="), Err(4));
        assert_eq!(go_base64_decode(b"not a token"), Err(3));
    }

    #[test]
    fn json_errors_match_go() {
        let format = |s: &str| match check(&b64(s)) {
            Err(TokenRejection::Format(e)) => e,
            other => panic!("{other:?}"),
        };
        let prefix = "invalid promotion token (JSON decoding failed): ";
        assert_eq!(format("{"), format!("{prefix}unexpected end of JSON input"));
        assert_eq!(
            format("hello"),
            format!("{prefix}invalid character 'h' looking for beginning of value")
        );
        assert_eq!(
            format("{} x"),
            format!("{prefix}invalid character 'x' after top-level value")
        );
        assert_eq!(
            format(r#"{"a":}"#),
            format!("{prefix}invalid character '}}' looking for beginning of value")
        );
        assert_eq!(
            format("\"abc\""),
            format!(
                "{prefix}json: cannot unmarshal string into Go value of type utils.PgControldataTokenContent"
            )
        );
        assert_eq!(
            format(r#"{"latestCheckpointTimelineID":4}"#),
            format!(
                "{prefix}json: cannot unmarshal number into Go struct field PgControldataTokenContent.latestCheckpointTimelineID of type string"
            )
        );
    }

    #[test]
    fn content_errors_name_the_first_empty_field() {
        assert_eq!(
            check(&b64("{}")),
            Err(TokenRejection::Content(
                "invalid promotion token (LatestCheckpointTimelineID is empty)".into()
            ))
        );
        assert_eq!(
            check(&b64(r#"{"LATESTCHECKPOINTTIMELINEID":"4"}"#)),
            Err(TokenRejection::Content(
                "invalid promotion token (REDOWALFile is empty)".into()
            ))
        );
    }
}
