//! Real PostgreSQL 15 for the emulator: programs run as the right OS user, the settings the
//! emulator owns, `pg_controldata`, SQL probes and the instance lifecycle.

pub mod conf;
pub mod controldata;
pub mod instance;
pub mod run;
pub mod sql;

pub use conf::Settings;
pub use controldata::ControlData;
pub use instance::Instance;
pub use run::PgBin;
