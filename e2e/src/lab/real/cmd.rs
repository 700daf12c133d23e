//! Running the host tools the real tier drives (`ip`, `ctr`, `nsenter`), with their stderr in
//! the error.

use std::process::{Command, Stdio};

use crate::lab::error::{LabError, Result};

/// Runs `program args…` and returns its stdout; a non-zero exit is an error carrying the command
/// line and stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Config(format!("cannot run {program}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Config(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Runs `program args…` inside the network namespace at `netns` (`nsenter --net=`: unlike
/// `ip netns exec` it does not remount /sys).
pub fn run_in(netns: &std::path::Path, program: &str, args: &[&str]) -> Result<String> {
    let net = format!("--net={}", netns.display());
    let mut all = vec![net.as_str(), "--", program];
    all.extend_from_slice(args);
    run("nsenter", &all)
}
