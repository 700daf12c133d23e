//! The real-CNPG lab tier (docs/lab-real.md): real nodes (containerd, kubelet, controller-manager,
//! scheduler, kube-proxy, CoreDNS) in network namespaces the lab creates, running the real
//! CloudNativePG operator next to the emulator tier's apiservers.

pub mod netns_proxy;
