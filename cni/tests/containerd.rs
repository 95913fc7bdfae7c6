//! Real-client tier: containerd 1.6 (`ctr run --cni`) drives the plugin in a sandbox. See
//! `clients/mod.rs` (harness), `clients/containerd.sh` (the scenarios).

mod clients;

/// `ctr run --rm --cni` (ADD; the DEL with an empty CNI_NETNS after the task exits; nothing
/// left), then `ctr run -d` + `task kill/rm` + `container rm` (no DEL: the attachment leaks) and
/// a CNI GC that removes the leak and keeps the live attachment (berth-cni only).
#[test]
fn containerd_drives_the_plugin() {
    clients::run_scenario("containerd.sh", &["containerd", "ctr", "runc"]);
}
