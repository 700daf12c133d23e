//! Reading a value out of a Secret, shared by both Secret formats.

use k8s_openapi::api::core::v1::Secret;

/// The string under `key` of a Secret's `data` (or `stringData`, as written by hand in tests).
pub(crate) fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.as_bytes())
        })
}
