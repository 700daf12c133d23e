//! Fault injection for the lab (docs/faults.md): a TCP fault proxy that sits in front of any
//! apiserver or PostgreSQL port ([`FaultProxy`], [`Fault`]), pausing a lab process with
//! SIGSTOP/SIGCONT ([`pause`]), and kubeconfigs that route a process's connections through the
//! proxies ([`Routes`]), and the seeded schedule of the automatic-failover nemesis ([`nemesis`]).
//! Loopback only.

pub mod nemesis;
pub mod pause;
pub mod proxy;
pub mod route;

pub use pause::{Paused, pause, pause_for, pause_pid};
pub use proxy::{Fault, FaultProxy, Stats};
pub use route::{Routes, redirect_kubeconfig};
