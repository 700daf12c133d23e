//! The exit codes of every command (docs/cli.md). 2 is clap's: a usage error (unknown flag,
//! missing argument) exits 2 before anything runs, so no outcome of a command uses it.

use std::process::ExitCode;

/// Done as asked (an operation succeeded, a check passed).
pub const OK: u8 = 0;
/// An error: the hub or a member could not be reached or read, a request was rejected, a file
/// could not be read; or a check found problems (`validate`, `plan`, `member list`).
pub const ERROR: u8 = 1;
/// The controller holds the operation or refused the request: a human must act (the message
/// says what). Nothing was rolled back.
pub const HELD: u8 = 3;
/// The operation ended without reaching its goal (rolled back, failed, a drill that failed).
pub const NOT_DONE: u8 = 4;
/// `--wait` gave up after `--timeout`; the operation goes on in the controller.
pub const TIMED_OUT: u8 = 5;

pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn no_outcome_shares_clap_usage_code() {
        #[derive(Parser, Debug)]
        struct Probe {
            #[arg(long)]
            _flag: bool,
        }
        let err = Probe::try_parse_from(["probe", "--unknown"]).unwrap_err();
        // clap's usage error, which no outcome may share.
        assert_eq!(err.exit_code(), 2);
        let outcomes = [OK, ERROR, HELD, NOT_DONE, TIMED_OUT];
        assert!(!outcomes.contains(&2));
        let mut sorted = outcomes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), outcomes.len(), "codes are distinct");
    }
}
