//! Go's `json.Marshal` of the CNPG types that appear as bad values in the webhook's messages
//! (`ReplicaClusterConfiguration`, `ExternalCluster`), written from the object's JSON.
//!
//! apimachinery prints a non-scalar bad value as `json.Marshal(value)`, which follows the Go
//! struct: field order, `omitempty`, sorted map keys, durations normalised (`8h` → `8h0m0s`),
//! and HTML-safe escaping (`<` → `\u003c`). Subtrees whose Go type the emulator does not model
//! (`barmanObjectStore`) are printed from the JSON as stored, keys sorted.

use serde_json::{Map, Value};

/// Builds one JSON object in Go field order.
struct GoObject(Vec<(&'static str, String)>);

impl GoObject {
    fn new() -> Self {
        GoObject(Vec::new())
    }

    fn raw(&mut self, key: &'static str, rendered: String) {
        self.0.push((key, rendered));
    }

    /// A `string` field without `omitempty`.
    fn string(&mut self, obj: &Map<String, Value>, key: &'static str) {
        let s = obj.get(key).and_then(Value::as_str).unwrap_or_default();
        self.raw(key, string(s));
    }

    /// A `string` field with `omitempty`.
    fn string_omitempty(&mut self, obj: &Map<String, Value>, key: &'static str) {
        if let Some(s) = obj
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.raw(key, string(s));
        }
    }

    /// A pointer or map field with `omitempty`: present unless absent or null (maps: or empty).
    fn value_omitempty(&mut self, obj: &Map<String, Value>, key: &'static str) {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.is_empty() && key_is_map(key) => {}
            Some(v) => self.raw(key, value(v)),
        }
    }

    fn finish(self) -> String {
        let fields: Vec<String> = self
            .0
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", string(k)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// Go's `omitempty` drops empty maps but never empty structs.
fn key_is_map(key: &str) -> bool {
    matches!(key, "connectionParameters" | "parameters")
}

/// `ReplicaClusterConfiguration` (`spec.replica`).
pub fn replica_cluster_configuration(replica: &Value) -> String {
    let empty = Map::new();
    let obj = replica.as_object().unwrap_or(&empty);
    let mut out = GoObject::new();
    out.string_omitempty(obj, "self");
    out.string_omitempty(obj, "primary");
    out.string(obj, "source");
    out.value_omitempty(obj, "enabled");
    out.string_omitempty(obj, "promotionToken");
    match obj.get("minApplyDelay") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) => {
            let normalised = parse_go_duration(d).map_or_else(|| d.clone(), format_go_duration);
            out.raw("minApplyDelay", string(&normalised));
        }
        Some(other) => out.raw("minApplyDelay", value(other)),
    }
    out.finish()
}

/// `[]ExternalCluster` (`spec.externalClusters`); Go prints a nil slice as `null`.
pub fn external_clusters(list: Option<&Value>) -> String {
    match list.and_then(Value::as_array) {
        Some(items) => {
            let rendered: Vec<String> = items.iter().map(external_cluster).collect();
            format!("[{}]", rendered.join(","))
        }
        None => "null".to_owned(),
    }
}

/// One `ExternalCluster`.
pub fn external_cluster(entry: &Value) -> String {
    let empty = Map::new();
    let obj = entry.as_object().unwrap_or(&empty);
    let mut out = GoObject::new();
    out.string(obj, "name");
    out.value_omitempty(obj, "connectionParameters");
    for key in ["sslCert", "sslKey", "sslRootCert", "password"] {
        if let Some(Value::Object(sel)) = obj.get(key) {
            out.raw(key, secret_key_selector(sel));
        }
    }
    out.value_omitempty(obj, "barmanObjectStore");
    if let Some(Value::Object(plugin)) = obj.get("plugin") {
        let mut p = GoObject::new();
        p.string(plugin, "name");
        p.value_omitempty(plugin, "enabled");
        p.value_omitempty(plugin, "isWALArchiver");
        p.value_omitempty(plugin, "parameters");
        out.raw("plugin", p.finish());
    }
    out.finish()
}

/// `corev1.SecretKeySelector`: `name` (inline, omitempty), `key`, `optional` (omitempty).
fn secret_key_selector(sel: &Map<String, Value>) -> String {
    let mut out = GoObject::new();
    out.string_omitempty(sel, "name");
    out.string(sel, "key");
    out.value_omitempty(sel, "optional");
    out.finish()
}

/// Any JSON value, Go style: object keys sorted (serde_json's map is ordered by key).
fn value(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Array(items) => {
            let rendered: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", rendered.join(","))
        }
        Value::Object(map) => {
            let rendered: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", string(k), value(v)))
                .collect();
            format!("{{{}}}", rendered.join(","))
        }
        other => other.to_string(),
    }
}

/// A JSON string as Go's encoder writes it (HTML-safe).
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const NANOS: [(&str, f64); 8] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("μs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
];

/// Go's `time.ParseDuration`, in nanoseconds (fractions to the nearest nanosecond).
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (_, scale) = NANOS.iter().find(|(u, _)| *u == &rest[..unit_len])?;
        total += number * scale;
        rest = &rest[unit_len..];
    }
    let nanos = total.round();
    (nanos <= i64::MAX as f64).then_some(if negative { -nanos } else { nanos } as i64)
}

/// Go's `time.Duration.String()`.
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, scale) = match u {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", fraction(u, scale));
    }
    let seconds = fraction(u % 60_000_000_000, 1_000_000_000);
    let minutes_total = u / 60_000_000_000;
    match minutes_total {
        0 => format!("{sign}{seconds}s"),
        m if m < 60 => format!("{sign}{m}m{seconds}s"),
        m => format!("{sign}{}h{}m{seconds}s", m / 60, m % 60),
    }
}

/// `value / scale` with the fractional digits Go prints (trailing zeros trimmed).
fn fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replica_configuration_follows_the_go_struct() {
        let replica =
            json!({"enabled": true, "primary": "b", "source": "a", "minApplyDelay": "8h"});
        assert_eq!(
            replica_cluster_configuration(&replica),
            r#"{"primary":"b","source":"a","enabled":true,"minApplyDelay":"8h0m0s"}"#
        );
        assert_eq!(
            replica_cluster_configuration(&json!({})),
            r#"{"source":""}"#
        );
    }

    #[test]
    fn external_clusters_follow_the_go_struct() {
        let list = json!([{
            "plugin": {"parameters": {"b": "2", "a": "<1>"}, "name": "barman"},
            "password": {"key": "k", "name": "s"},
            "name": "x",
            "connectionParameters": {},
        }]);
        assert_eq!(
            external_clusters(Some(&list)),
            r#"[{"name":"x","password":{"name":"s","key":"k"},"plugin":{"name":"barman","parameters":{"a":"\u003c1\u003e","b":"2"}}}]"#
        );
        assert_eq!(external_clusters(None), "null");
    }

    #[test]
    fn durations_round_trip_like_go() {
        for (input, go) in [
            ("8h", "8h0m0s"),
            ("90m", "1h30m0s"),
            ("1.5s", "1.5s"),
            ("300ms", "300ms"),
            ("1m30.25s", "1m30.25s"),
            ("0", "0s"),
            ("-2s", "-2s"),
            ("1500us", "1.5ms"),
        ] {
            let nanos = parse_go_duration(input).unwrap();
            assert_eq!(format_go_duration(nanos), go, "{input}");
        }
        assert_eq!(parse_go_duration("8 hours"), None);
        assert_eq!(parse_go_duration("5"), None);
    }
}
