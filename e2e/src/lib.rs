#![forbid(unsafe_code)]
//! The local lab (real kube-apiservers and etcd, later the CNPG emulator) and the e2e harness.

pub mod bench_stats;
pub mod emulator;
pub mod faults;
pub mod harness;
pub mod lab;
