//! `pg_controldata` output: the fields the token and the state machine read (contract §3).

use std::collections::BTreeMap;

use topology::token::{ControlPoint, PromotionToken};

use crate::emulator::error::{EmulatorError, Result};

/// Operator version written into tokens the emulator produces. CNPG never checks it.
pub const OPERATOR_VERSION: &str = "federator-emulator";

/// The parsed `Key: value` lines of `pg_controldata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    fields: BTreeMap<String, String>,
}

/// `Database cluster state` as PostgreSQL prints it.
pub mod state {
    pub const SHUT_DOWN: &str = "shut down";
    pub const SHUT_DOWN_IN_RECOVERY: &str = "shut down in recovery";
    pub const IN_PRODUCTION: &str = "in production";
    pub const IN_ARCHIVE_RECOVERY: &str = "in archive recovery";
}

impl ControlData {
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { fields }
    }

    pub fn get(&self, key: &str) -> Result<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| EmulatorError::ControlData(key.to_owned()))
    }

    pub fn cluster_state(&self) -> Result<&str> {
        self.get("Database cluster state")
    }

    pub fn system_identifier(&self) -> Result<&str> {
        self.get("Database system identifier")
    }

    pub fn timeline(&self) -> Result<&str> {
        self.get("Latest checkpoint's TimeLineID")
    }

    /// True once PostgreSQL stopped cleanly, as a primary or as a standby (the only states in
    /// which CNPG builds a demotion token).
    pub fn is_shut_down(&self) -> bool {
        matches!(
            self.cluster_state(),
            Ok(state::SHUT_DOWN | state::SHUT_DOWN_IN_RECOVERY)
        )
    }

    /// The three values CNPG's promotion check compares.
    pub fn control_point(&self) -> Result<ControlPoint> {
        Ok(ControlPoint {
            system_identifier: self.system_identifier()?.to_owned(),
            timeline: self.timeline()?.to_owned(),
            redo_location: self.get("Latest checkpoint's REDO location")?.to_owned(),
        })
    }

    /// The demotion token of contract §3, from the five pg_controldata fields it names.
    pub fn token(&self) -> Result<PromotionToken> {
        Ok(PromotionToken {
            latest_checkpoint_timeline_id: self.timeline()?.to_owned(),
            redo_wal_file: self.get("Latest checkpoint's REDO WAL file")?.to_owned(),
            database_system_identifier: self.system_identifier()?.to_owned(),
            latest_checkpoint_redo_location: self
                .get("Latest checkpoint's REDO location")?
                .to_owned(),
            time_of_latest_checkpoint: self.get("Time of latest checkpoint")?.to_owned(),
            operator_version: OPERATOR_VERSION.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pg_control version number:            1300
Database system identifier:           7439227424188000123
Database cluster state:               shut down
Latest checkpoint location:           0/3000028
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Time of latest checkpoint:            Mon Nov 23 06:40:01 2026
";

    #[test]
    fn builds_the_token_from_its_five_fields() {
        let data = ControlData::parse(SAMPLE);
        assert!(data.is_shut_down());
        let token = data.token().expect("all fields present");
        assert_eq!(token.redo_wal_file, "000000010000000000000003");
        assert_eq!(token.latest_checkpoint_redo_location, "0/3000028");
        assert_eq!(token.time_of_latest_checkpoint, "Mon Nov 23 06:40:01 2026");
        assert_eq!(
            topology::token::wal_file_name(1, token.redo_lsn().expect("lsn")),
            token.redo_wal_file
        );
        token.validate().expect("valid");
    }

    #[test]
    fn a_missing_field_is_named() {
        let data = ControlData::parse("Database cluster state: in production\n");
        assert!(!data.is_shut_down());
        assert!(
            matches!(data.token(), Err(EmulatorError::ControlData(k)) if k.contains("TimeLineID"))
        );
    }
}
