//! Per-namespace sysctls, written through `/proc/sys/net/…` from a thread inside the namespace
//! (no `sysctl` binary). Equivalent of `ip netns exec NS sysctl -w KEY=VALUE`.

use std::io::Write;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Writes `value` to `/proc/sys/KEY` inside `netns`; `key` uses slashes (`net/ipv4/ip_forward`).
pub async fn write(netns: &Netns, key: &str, value: &str) -> Result<()> {
    if key.contains("..") || !key.starts_with("net/") {
        return Err(Error::invalid("sysctl key", key, "must be under net/"));
    }
    let path = format!("/proc/sys/{key}");
    let value = value.to_string();
    let k = key.to_string();
    netns
        .enter(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(value.as_bytes()))
        })
        .await?
        .map_err(|source| Error::Sysctl { key: k, source })
}

/// Reads `/proc/sys/KEY` inside `netns`, trimmed.
pub async fn read(netns: &Netns, key: &str) -> Result<String> {
    let path = format!("/proc/sys/{key}");
    let k = key.to_string();
    netns
        .enter(move || std::fs::read_to_string(&path).map(|s| s.trim().to_string()))
        .await?
        .map_err(|source| Error::Sysctl { key: k, source })
}
