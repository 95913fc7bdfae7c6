//! This host's endpoints in the store: put under its lease when attached (so they vanish from
//! every peer when it dies), deleted when detached.

use super::Cluster;
use super::records::{self, Claim, EndpointRecord, to_json};
use super::store::{LeaseId, Op, Txn};
use crate::error::Result;

impl Cluster {
    /// Advertises one endpoint of this host.
    pub(crate) async fn register(&self, network: &str, rec: &EndpointRecord) -> Result<()> {
        let key = records::endpoint(network, &self.identity.name, &rec.container);
        let put = |lease: LeaseId| {
            let mut rec = rec.clone();
            rec.incarnation = lease.0;
            Txn::new(
                vec![],
                vec![Op::Put {
                    key: key.clone(),
                    value: to_json(&rec),
                    lease: Some(lease),
                }],
            )
        };
        let lease = self.lease().await?;
        match self.store.txn(put(lease)).await {
            Ok(_) => Ok(()),
            // The lease ended behind our back (the agent has not noticed yet): a new one.
            Err(e) if super::lease_gone(&e) => {
                self.lease_lost(lease).await;
                let lease = self.lease().await?;
                self.store.txn(put(lease)).await.map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Withdraws one endpoint of this host (its addresses stay claimed).
    pub(crate) async fn unregister(&self, network: &str, container: &str) -> Result<()> {
        let key = records::endpoint(network, &self.identity.name, container);
        self.store
            .txn(Txn::new(vec![], vec![Op::Delete(key)]))
            .await
            .map(drop)
    }

    /// Withdraws one endpoint of this host and releases its addresses, in one transaction.
    pub(crate) async fn withdraw(&self, network: &str, container: &str) -> Result<()> {
        let (claims, _) = self.store.list(&records::claims(network)).await?;
        let mut ops = vec![Op::Delete(records::endpoint(
            network,
            &self.identity.name,
            container,
        ))];
        for kv in &claims {
            if let Ok(c) = self.decode::<Claim>(kv)
                && c.host == self.identity.name
                && c.container == container
            {
                ops.push(Op::Delete(kv.key.clone()));
            }
        }
        self.store.txn(Txn::new(vec![], ops)).await.map(drop)
    }
}
