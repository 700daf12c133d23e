//! The VM-wide sysctls the kubelet sets at start (its "kernel tunables"), recorded before the
//! lab's first kubelet starts and restored when the lab goes down. A record left by a lab killed
//! with -9 is kept (it holds the values from before that lab), so the next `up` or `down` still
//! restores the machine's own values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lab::error::{LabError, Result};

/// What kubelet 1.34 writes when `protectKernelDefaults` is false.
pub const KUBELET_TUNABLES: [&str; 6] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];

fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn read(key: &str) -> Result<String> {
    let path = proc_path(key);
    std::fs::read_to_string(&path)
        .map(|v| v.trim().to_owned())
        .map_err(LabError::io("reading", path))
}

/// Records the current values into `record` unless a record exists. Returns whether it wrote.
pub fn record(record: &Path) -> Result<bool> {
    if record.exists() {
        return Ok(false);
    }
    let values: BTreeMap<&str, String> = KUBELET_TUNABLES
        .iter()
        .map(|key| read(key).map(|v| (*key, v)))
        .collect::<Result<_>>()?;
    if let Some(parent) = record.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io("creating", parent))?;
    }
    let text = serde_json::to_string_pretty(&values).expect("a map of strings serializes");
    std::fs::write(record, text).map_err(LabError::io("writing", record))?;
    Ok(true)
}

/// Writes the recorded values back and removes the record. Returns the keys whose value
/// changed back. No record: nothing to do.
pub fn restore(record: &Path) -> Result<Vec<String>> {
    let text = match std::fs::read_to_string(record) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io("reading", record)(e)),
    };
    let values: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| LabError::Parse {
            what: record.display().to_string(),
            message: e.to_string(),
        })?;
    let mut restored = Vec::new();
    for (key, value) in &values {
        if read(key)? != *value {
            let path = proc_path(key);
            std::fs::write(&path, value).map_err(LabError::io("writing", path))?;
            restored.push(format!("{key}={value}"));
        }
    }
    std::fs::remove_file(record).map_err(LabError::io("removing", record))?;
    Ok(restored)
}
