//! The lab's network namespaces: one holding the lab bridge, one per region (member or hub)
//! holding its node. Created with `ip`; deleting a namespace removes its interfaces, routes and iptables
//! rules with it.

use std::path::Path;

use super::cmd::{run, run_in};
use super::plan::{
    LAB_BRIDGE, NODE_PREFIX_LEN, RealPlan, RegionPlan, node_ip, pod_cidr, service_cidr,
};
use crate::lab::error::Result;

/// Per-namespace sysctls a node needs: routing between the pod bridge and the lab bridge, and
/// iptables seeing bridged traffic (kube-proxy's Service DNAT for pods on the same bridge).
const NODE_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
];

pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Creates the lab namespace with its bridge, and each region's namespace joined to it. A
/// namespace that exists is deleted first (it is a leftover: the caller sweeps before this).
pub fn create(plan: &RealPlan) -> Result<()> {
    let lab = plan.lab_netns();
    add(&lab)?;
    run(
        "ip",
        &["-n", &lab, "link", "add", LAB_BRIDGE, "type", "bridge"],
    )?;
    run("ip", &["-n", &lab, "link", "set", LAB_BRIDGE, "up"])?;
    // The S3 endpoint's address: the only one in the lab namespace, on the bridge itself.
    let s3 = format!("{}/{NODE_PREFIX_LEN}", super::plan::S3_ADDRESS);
    run("ip", &["-n", &lab, "addr", "add", &s3, "dev", LAB_BRIDGE])?;
    for region in &plan.regions {
        create_region(plan, region)?;
    }
    Ok(())
}

fn add(name: &str) -> Result<()> {
    if exists(name) {
        run("ip", &["netns", "delete", name])?;
    }
    run("ip", &["netns", "add", name])?;
    run("ip", &["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

fn create_region(plan: &RealPlan, region: &RegionPlan) -> Result<()> {
    let lab = plan.lab_netns();
    let ns = region.netns();
    add(&ns)?;
    let port = region.bridge_port();
    run(
        "ip",
        &[
            "-n", &lab, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    )?;
    run(
        "ip",
        &["-n", &lab, "link", "set", &port, "master", LAB_BRIDGE],
    )?;
    run("ip", &["-n", &lab, "link", "set", &port, "up"])?;
    // The S3 endpoint in the lab namespace answers this region's pods through their node.
    let node = region.node_ip().to_string();
    run(
        "ip",
        &[
            "-n",
            &lab,
            "route",
            "replace",
            &region.pod_cidr(),
            "via",
            &node,
        ],
    )?;
    let address = format!("{}/{NODE_PREFIX_LEN}", region.node_ip());
    run("ip", &["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
    run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
    // The region's own Services from the node itself (kube-proxy's OUTPUT rules rewrite them to
    // a pod; a locally sent packet needs a route before they run): `federator-lab dsn`'s proxy
    // dials a Cluster's `-rw` Service from here.
    run(
        "ip",
        &[
            "-n",
            &ns,
            "route",
            "replace",
            &region.service_cidr(),
            "dev",
            "eth0",
        ],
    )?;
    // The other members' pods and Services, through their nodes. Routes to every member the lab
    // knows (not only the running ones), so a region added later is reachable without a change.
    // The hub gets none: its pods talk to the member apiservers only, through its own node.
    let others = if region.is_hub() {
        0
    } else {
        crate::lab::topology::MEMBERS.len()
    };
    for other in 0..others {
        if other == region.index {
            continue;
        }
        let via = node_ip(other).to_string();
        for cidr in [pod_cidr(other), service_cidr(other)] {
            run(
                "ip",
                &[
                    "-n", &ns, "route", "replace", &cidr, "via", &via, "dev", "eth0",
                ],
            )?;
        }
    }
    let netns = region.netns_path();
    for (key, value) in NODE_SYSCTLS {
        run_in(&netns, "sysctl", &["-q", "-w", &format!("{key}={value}")])?;
    }
    Ok(())
}

/// Deletes every namespace of the lab `id` (`<id>-*`), whatever regions it had.
pub fn delete_all(id: &str) -> Result<Vec<String>> {
    let prefix = format!("{id}-");
    let mut deleted = Vec::new();
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Ok(deleted);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            run("ip", &["netns", "delete", &name])?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}
