//! The `none` driver (`docker run --network none`): the container netns gets only `lo`, up.

use async_trait::async_trait;

use super::{DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources};
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::network::NetworkInfo;
use crate::options::DriverKind;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NoneDriver;

#[async_trait]
impl NetworkDriver for NoneDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::None
    }

    fn uses_ipam(&self) -> bool {
        false
    }

    async fn create_network(
        &self,
        _: DriverContext<'_>,
        _: &NetworkInfo,
    ) -> Result<NetworkResources> {
        Ok(NetworkResources {
            device: None,
            mtu: 65536,
            adopted: None,
        })
    }

    async fn delete_network(&self, _: DriverContext<'_>, _: &NetworkInfo) -> Result<()> {
        Ok(())
    }

    async fn attach(
        &self,
        _: DriverContext<'_>,
        _: &NetworkInfo,
        _: &EndpointPlan<'_>,
    ) -> Result<EndpointResources> {
        // `Host` has brought `lo` up: that is all a `none` endpoint is.
        Ok(EndpointResources {
            host_ifname: None,
            mac: None,
        })
    }

    async fn detach(&self, _: DriverContext<'_>, _: &NetworkInfo, _: &Attachment) -> Result<()> {
        Ok(())
    }

    async fn check(
        &self,
        _: DriverContext<'_>,
        _: &NetworkInfo,
        _: &Attachment,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
