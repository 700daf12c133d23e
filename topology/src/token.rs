//! CNPG's demotion/promotion token (contract §3): standard base64 of compact JSON whose six
//! values are all strings, in a fixed key order, plus the pure runtime check CNPG's instance
//! manager applies before promoting (system id → timeline → REDO LSN).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The decoded token. Field order is the wire order; do not reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionToken {
    #[serde(rename = "latestCheckpointTimelineID", default)]
    pub latest_checkpoint_timeline_id: String,
    #[serde(rename = "redoWalFile", default)]
    pub redo_wal_file: String,
    #[serde(rename = "databaseSystemIdentifier", default)]
    pub database_system_identifier: String,
    #[serde(rename = "latestCheckpointREDOLocation", default)]
    pub latest_checkpoint_redo_location: String,
    #[serde(rename = "timeOfLatestCheckpoint", default)]
    pub time_of_latest_checkpoint: String,
    #[serde(rename = "operatorVersion", default)]
    pub operator_version: String,
}

/// Why a token string is not a usable token. Display strings follow CNPG's wording; the webhook
/// prefixes them with `Invalid promotionToken format:` / `Invalid promotionToken content:`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid promotion token (Base64 decoding failed): {0}")]
    Base64(String),
    #[error("invalid promotion token (JSON decoding failed): {0}")]
    Json(String),
    #[error("invalid promotion token ({0} is empty)")]
    Empty(&'static str),
}

impl TokenError {
    /// True for decoding failures (`format`), false for missing fields (`content`).
    pub fn is_format_error(&self) -> bool {
        !matches!(self, TokenError::Empty(_))
    }
}

impl PromotionToken {
    /// Decodes base64 and JSON, without checking field contents.
    pub fn decode(encoded: &str) -> Result<Self, TokenError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|e| TokenError::Base64(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| TokenError::Json(e.to_string()))
    }

    /// Decodes and requires all six values to be non-empty (CNPG's `IsValid()`).
    pub fn parse(encoded: &str) -> Result<Self, TokenError> {
        let token = Self::decode(encoded)?;
        token.validate()?;
        Ok(token)
    }

    pub fn validate(&self) -> Result<(), TokenError> {
        let fields = [
            (
                "LatestCheckpointTimelineID",
                &self.latest_checkpoint_timeline_id,
            ),
            ("REDOWALFile", &self.redo_wal_file),
            ("DatabaseSystemIdentifier", &self.database_system_identifier),
            (
                "LatestCheckpointREDOLocation",
                &self.latest_checkpoint_redo_location,
            ),
            ("TimeOfLatestCheckpoint", &self.time_of_latest_checkpoint),
            ("OperatorVersion", &self.operator_version),
        ];
        match fields.iter().find(|(_, value)| value.is_empty()) {
            Some((name, _)) => Err(TokenError::Empty(name)),
            None => Ok(()),
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        STANDARD.encode(json)
    }

    pub fn timeline(&self) -> Option<u32> {
        self.latest_checkpoint_timeline_id.parse().ok()
    }

    pub fn redo_lsn(&self) -> Option<Lsn> {
        self.latest_checkpoint_redo_location.parse().ok()
    }
}

/// A PostgreSQL WAL location, compared as a 64-bit integer (never as text: `0/10000028` is
/// after `0/9000028`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not of the form X/Y"))?;
        let hi = u32::from_str_radix(hi, 16).map_err(|e| format!("{s:?}: {e}"))?;
        let lo = u32::from_str_radix(lo, 16).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The WAL segment file name holding `lsn` on `timeline`, for 16 MiB segments.
pub fn wal_file_name(timeline: u32, lsn: Lsn) -> String {
    const SEGMENT: u64 = 16 * 1024 * 1024;
    let segno = lsn.0 / SEGMENT;
    let per_xlogid = 0x1_0000_0000 / SEGMENT;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_xlogid,
        segno % per_xlogid
    )
}

/// The parts of an instance's `pg_controldata` that the token check reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPoint {
    pub system_identifier: String,
    pub timeline: String,
    pub redo_location: String,
}

/// The outcome of CNPG's per-instance token check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The instance is exactly at the token: promote.
    Ready,
    /// Not there yet; CNPG re-checks every 10 s, forever.
    Wait(String),
    /// Can never succeed with this token: the cluster becomes unrecoverable until it changes.
    Fatal(String),
}

/// Checks a token against an instance, in CNPG's order and with its messages (contract §3).
pub fn verify(token: &PromotionToken, current: &ControlPoint) -> TokenVerdict {
    if token.database_system_identifier != current.system_identifier {
        return TokenVerdict::Fatal(format!(
            "mismatching system identifiers, current:{} wanted:{}",
            current.system_identifier, token.database_system_identifier
        ));
    }
    let (Ok(wanted_tl), Ok(current_tl)) = (
        token.latest_checkpoint_timeline_id.parse::<u32>(),
        current.timeline.parse::<u32>(),
    ) else {
        return TokenVerdict::Fatal(format!(
            "invalid timeline, current:{} wanted:{}",
            current.timeline, token.latest_checkpoint_timeline_id
        ));
    };
    if wanted_tl > current_tl {
        return TokenVerdict::Wait(format!(
            "requested timeline not reached, current:{current_tl} wanted:{wanted_tl}"
        ));
    }
    if wanted_tl < current_tl {
        return TokenVerdict::Fatal(format!(
            "requested timeline is older than current one, current:{current_tl} wanted:{wanted_tl}"
        ));
    }
    let wanted: Lsn = match token.latest_checkpoint_redo_location.parse() {
        Ok(lsn) => lsn,
        Err(e) => return TokenVerdict::Fatal(format!("promotion token LSN is invalid: {e}")),
    };
    let replayed: Lsn = match current.redo_location.parse() {
        Ok(lsn) => lsn,
        Err(e) => return TokenVerdict::Fatal(format!("last replay LSN is invalid: {e}")),
    };
    match replayed.cmp(&wanted) {
        std::cmp::Ordering::Less => TokenVerdict::Wait(format!(
            "waiting for promotion token LSN ({wanted}) to be replayed (the last replayed LSN is {replayed})"
        )),
        std::cmp::Ordering::Greater => TokenVerdict::Fatal(format!(
            "promotion token LSN ({wanted}) is older than the last replay LSN ({replayed})"
        )),
        std::cmp::Ordering::Equal => TokenVerdict::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> PromotionToken {
        PromotionToken {
            latest_checkpoint_timeline_id: "4".into(),
            redo_wal_file: "00000004000001FA00000049".into(),
            database_system_identifier: "7345890123456789012".into(),
            latest_checkpoint_redo_location: "1FA/49000028".into(),
            time_of_latest_checkpoint: "Mon 23 Nov 2026 06:00:00 AM UTC".into(),
            operator_version: "1.27.1".into(),
        }
    }

    fn at(tl: &str, lsn: &str) -> ControlPoint {
        ControlPoint {
            system_identifier: "7345890123456789012".into(),
            timeline: tl.into(),
            redo_location: lsn.into(),
        }
    }

    #[test]
    fn encodes_compact_json_in_cnpg_key_order() {
        let encoded = token().encode();
        let json = String::from_utf8(STANDARD.decode(&encoded).unwrap()).unwrap();
        assert!(json.starts_with(r#"{"latestCheckpointTimelineID":"4","redoWalFile":"00000004000001FA00000049","databaseSystemIdentifier":"#));
        assert!(json.ends_with(r#""operatorVersion":"1.27.1"}"#));
        assert_eq!(PromotionToken::parse(&encoded).unwrap(), token());
    }

    #[test]
    fn decoding_errors_name_the_stage_and_the_empty_field() {
        assert!(matches!(
            PromotionToken::parse("not base64!"),
            Err(TokenError::Base64(_))
        ));
        let not_json = STANDARD.encode("hello");
        assert!(matches!(
            PromotionToken::parse(&not_json),
            Err(TokenError::Json(_))
        ));
        let mut t = token();
        t.redo_wal_file.clear();
        let err = PromotionToken::parse(&t.encode()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid promotion token (REDOWALFile is empty)"
        );
        assert!(!err.is_format_error());
    }

    #[test]
    fn lsn_compares_numerically_and_round_trips() {
        let a: Lsn = "0/9000028".parse().unwrap();
        let b: Lsn = "0/10000028".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "0/10000028");
        assert!("1/".parse::<Lsn>().is_err());
    }

    #[test]
    fn wal_file_name_matches_timeline_and_lsn() {
        assert_eq!(
            wal_file_name(4, "1FA/49000028".parse().unwrap()),
            "00000004000001FA00000049"
        );
        assert_eq!(
            wal_file_name(1, "0/3000028".parse().unwrap()),
            "000000010000000000000003"
        );
    }

    #[test]
    fn verify_follows_sysid_then_timeline_then_lsn() {
        let t = token();
        assert_eq!(verify(&t, &at("4", "1FA/49000028")), TokenVerdict::Ready);
        assert!(
            matches!(verify(&t, &at("3", "1FA/49000028")), TokenVerdict::Wait(m) if m == "requested timeline not reached, current:3 wanted:4")
        );
        assert!(
            matches!(verify(&t, &at("5", "0/0")), TokenVerdict::Fatal(m) if m.starts_with("requested timeline is older"))
        );
        assert!(
            matches!(verify(&t, &at("4", "1FA/40000028")), TokenVerdict::Wait(m) if m.starts_with("waiting for promotion token LSN (1FA/49000028)"))
        );
        assert!(
            matches!(verify(&t, &at("4", "1FB/0")), TokenVerdict::Fatal(m) if m.starts_with("promotion token LSN (1FA/49000028) is older"))
        );
        let mut foreign = at("4", "1FA/49000028");
        foreign.system_identifier = "1".into();
        assert!(
            matches!(verify(&t, &foreign), TokenVerdict::Fatal(m) if m.starts_with("mismatching system identifiers"))
        );
        let mut zero = t.clone();
        zero.latest_checkpoint_redo_location = "0/0".into();
        assert!(matches!(
            verify(&zero, &at("4", "1FA/49000028")),
            TokenVerdict::Fatal(_)
        ));
    }
}
