//! Docker's predefined networks. `bridge` is kept as the host's [`DaemonConfig`] says (Docker's
//! daemon.json): created when the host is built with a config, or on the first attach to
//! `bridge` (with Docker's defaults); re-created when the config changed and no container is
//! on it. `none` (only `lo`) is created on the first attach to it. (`host` is not a network:
//! see [`Host::use_host_netns`].)

use crate::daemon_config::{DEFAULT_BRIDGE, DaemonConfig};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::state::{read_json, write_json};

use super::Host;

/// Where the config the `bridge` network was last made from is kept.
const APPLIED: &str = "daemon-config.json";

/// The predefined network of containers that get only `lo`.
pub const NONE_NETWORK: &str = "none";

impl Host {
    /// Creates `network` if it is a predefined one (`bridge`, `none`) that does not exist yet.
    pub(super) async fn ensure_predefined(&self, network: &str) -> Result<()> {
        if self.state.network(network)?.is_some() {
            return Ok(());
        }
        match network {
            DEFAULT_BRIDGE => self.ensure_default_bridge().await,
            NONE_NETWORK => match self
                .create_network_unchecked(Network::none(NONE_NETWORK).into())
                .await
            {
                Ok(_) | Err(Error::NetworkExists { .. }) => Ok(()),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        }
    }

    /// Makes the `bridge` network match the daemon config (Docker's defaults without one).
    /// With no config given, an existing `bridge` network is kept as it is.
    pub(super) async fn ensure_default_bridge(&self) -> Result<()> {
        let cfg = self.daemon.clone().unwrap_or_default();
        let applied_path = self.state.root().join(APPLIED);
        if let Some(net) = self.state.network(DEFAULT_BRIDGE)? {
            let applied: Option<DaemonConfig> = read_json(&applied_path)?;
            if self.daemon.is_none() || applied.as_ref() == Some(&cfg) {
                return Ok(());
            }
            let endpoints: Vec<String> = self
                .state
                .endpoints(&net.name)?
                .into_iter()
                .map(|a| a.container)
                .collect();
            if !endpoints.is_empty() {
                return Err(Error::NetworkInUse {
                    name: net.name,
                    endpoints,
                });
            }
            tracing::info!(target: "berth::host", "daemon config changed: re-creating the bridge network");
            self.delete_network(DEFAULT_BRIDGE).await?;
        }
        match self
            .create_network_unchecked(cfg.bridge_network()?.into())
            .await
        {
            Ok(_) | Err(Error::NetworkExists { .. }) => {}
            Err(e) => return Err(e),
        }
        write_json(&applied_path, &cfg)
    }
}
