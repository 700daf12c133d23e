//! `federator controller` refuses bad flag values before it starts anything (no hub is
//! contacted): the message names the flag, the value, the allowed range and the default.

use std::process::Output;

fn controller(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_federator"))
        // A kubeconfig that does not exist: the values must be refused before it is read.
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "controller"])
        .args(args)
        .output()
        .expect("running federator controller")
}

#[test]
fn member_probe_timing_out_of_bounds_is_refused_naming_the_flag_and_the_fix() {
    for (args, needed) in [
        (
            &["--member-probe-timeout", "20s"][..],
            "--member-probe-timeout 20s: must be at least 1s and less than the member request timeout (15s)",
        ),
        (
            &["--member-probe-interval", "0s"][..],
            "--member-probe-interval 0s: must be between 1s and 300s",
        ),
        (
            &["--member-probe-interval", "10m"][..],
            "--member-probe-interval 600s: must be between 1s and 300s",
        ),
    ] {
        let out = controller(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needed), "{args:?}: {stderr}");
        assert!(stderr.contains("default"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("/nonexistent"),
            "{args:?} read the kubeconfig: {stderr}"
        );
    }
    // Not a duration at all: clap names the flag.
    let out = controller(&["--member-probe-interval", "often"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--member-probe-interval"), "{stderr}");
}
