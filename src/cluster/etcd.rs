//! [`Etcd`]: the [`ClusterStore`] over etcd v3 (`etcd-client`), the store dockerd's
//! `--cluster-store=etcd://…` named. Every key is put under a prefix, every request has a
//! deadline (an unreachable etcd fails fast with [`Error::Store`] naming it), and the client
//! reconnects by itself when etcd comes back.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, TxnOp, WatchOptions,
};
use futures::StreamExt;

use super::store::*;
use crate::error::{Error, Result};

/// TLS for the connection to etcd: a CA to trust and, optionally, a client certificate.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// PEM file of the CA that signed etcd's certificate.
    pub ca: Option<PathBuf>,
    /// PEM files of the client certificate and its key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name etcd's certificate is checked against (default: the endpoint's host).
    pub domain: Option<String>,
}

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Endpoints (`http://10.0.0.1:2379`, or `https://…` with [`EtcdConfig::tls`]).
    pub endpoints: Vec<String>,
    /// The prefix every key of berth lives under (default `/berth`).
    pub prefix: String,
    /// Deadline of one request (default 2 s).
    pub request_timeout: Duration,
    /// Deadline of connecting (default 2 s).
    pub connect_timeout: Duration,
    /// TLS, for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// User name and password, when etcd has authentication on.
    pub user: Option<(String, String)>,
}

impl EtcdConfig {
    /// Endpoints with the default prefix and timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: "/berth".into(),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            tls: None,
            user: None,
        }
    }

    /// Parses dockerd's `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (also `http://`, `https://`).
    pub fn parse(url: &str) -> Result<EtcdConfig> {
        let bad = |why: &'static str| Error::invalid("cluster store", url, why);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("it needs a scheme: etcd://HOST:PORT"))?;
        let scheme = match scheme {
            "etcd" | "http" => "http",
            "https" => "https",
            _ => return Err(bad("the only store is etcd (etcd://, http:// or https://)")),
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) if !p.is_empty() => (h, format!("/{}", p.trim_end_matches('/'))),
            Some((h, _)) => (h, "/berth".into()),
            None => (rest, "/berth".into()),
        };
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| bad("every endpoint needs HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad("every endpoint needs HOST:PORT with a port of 1-65535"));
            }
            endpoints.push(format!("{scheme}://{h}"));
        }
        let mut cfg = EtcdConfig::new(endpoints);
        cfg.prefix = prefix;
        Ok(cfg)
    }
}

/// A cluster store on etcd v3 (cheap to clone).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    prefix: String,
    describe: String,
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Etcd {
    /// Connects (`endpoints` like `http://10.0.0.1:2379`; keys under `prefix`).
    pub async fn connect<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        prefix: &str,
    ) -> Result<Etcd> {
        let mut cfg = EtcdConfig::new(endpoints);
        cfg.prefix = prefix.into();
        Etcd::with_config(cfg).await
    }

    /// Connects with every setting given.
    pub async fn with_config(cfg: EtcdConfig) -> Result<Etcd> {
        let describe = format!("etcd {} {}", cfg.endpoints.join(","), cfg.prefix);
        if cfg.endpoints.is_empty() {
            return Err(Error::invalid(
                "cluster store",
                "",
                "no etcd endpoint given",
            ));
        }
        let mut opts = ConnectOptions::new()
            .with_timeout(cfg.request_timeout)
            .with_connect_timeout(cfg.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), cfg.request_timeout)
            .with_require_leader(true);
        if let Some((u, p)) = &cfg.user {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if let Some(tls) = &cfg.tls {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Error::State {
                    path: p.clone(),
                    op: "read TLS file",
                    source: e,
                })
            };
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(d) = &tls.domain {
                t = t.domain_name(d.clone());
            }
            opts = opts.with_tls(t);
        }
        let err = |e: etcd_client::Error| Error::Store {
            store: describe.clone(),
            op: "connect",
            reason: e.to_string(),
        };
        let client = tokio::time::timeout(
            cfg.connect_timeout,
            Client::connect(cfg.endpoints.clone(), Some(opts)),
        )
        .await
        .map_err(|_| Error::Store {
            store: describe.clone(),
            op: "connect",
            reason: format!("no answer within {:?}", cfg.connect_timeout),
        })?
        .map_err(err)?;
        Ok(Etcd {
            client,
            prefix: format!("{}/", cfg.prefix.trim_end_matches('/')),
            describe,
            timeout: cfg.request_timeout,
        })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn strip(&self, k: &[u8]) -> String {
        let s = String::from_utf8_lossy(k);
        s.strip_prefix(&self.prefix).unwrap_or(&s).to_string()
    }

    fn err(&self, op: &'static str) -> impl Fn(etcd_client::Error) -> Error + '_ {
        move |e| Error::Store {
            store: self.describe.clone(),
            op,
            reason: e.to_string(),
        }
    }

    async fn deadline<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(self.err(op)),
            Err(_) => Err(Error::Store {
                store: self.describe.clone(),
                op,
                reason: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: self.strip(kv.key()),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
        }
    }
}

#[async_trait]
impl ClusterStore for Etcd {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut c = self.client.kv_client();
        let r = self.deadline("get", c.get(self.key(key), None)).await?;
        Ok(r.kvs().first().map(|kv| self.kv(kv)))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let mut c = self.client.kv_client();
        let r = self
            .deadline(
                "list",
                c.get(self.key(prefix), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let rev = r.header().map_or(0, |h| h.revision());
        Ok((r.kvs().iter().map(|kv| self.kv(kv)).collect(), rev))
    }

    async fn txn(&self, txn: Txn) -> Result<bool> {
        let when: Vec<EtcdCompare> = txn
            .when
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => EtcdCompare::version(self.key(k), CompareOp::Equal, 0),
                Compare::ModRevision(k, r) => {
                    EtcdCompare::mod_revision(self.key(k), CompareOp::Equal, *r)
                }
            })
            .collect();
        let then: Vec<TxnOp> = txn
            .then
            .iter()
            .map(|o| match o {
                Op::Put { key, value, lease } => TxnOp::put(
                    self.key(key),
                    value.clone(),
                    lease.map(|l| PutOptions::new().with_lease(l.0)),
                ),
                Op::Delete(k) => TxnOp::delete(self.key(k), None),
                Op::DeletePrefix(p) => {
                    TxnOp::delete(self.key(p), Some(DeleteOptions::new().with_prefix()))
                }
            })
            .collect();
        let mut c = self.client.kv_client();
        let t = etcd_client::Txn::new().when(when).and_then(then);
        let r = self.deadline("txn", c.txn(t)).await?;
        Ok(r.succeeded())
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let mut c = self.client.lease_client();
        let secs = ttl.as_secs().max(1) as i64;
        let r = self.deadline("lease grant", c.grant(secs, None)).await?;
        Ok(LeaseId(r.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let mut c = self.client.lease_client();
        let ttl = match self
            .deadline("lease keep-alive", async {
                let (mut keeper, mut stream) = c.keep_alive(lease.0).await?;
                keeper.keep_alive().await?;
                let m = stream.message().await?;
                Ok(m.map_or(0, |m| m.ttl()))
            })
            .await
        {
            Err(e) if super::lease_gone(&e) => return Ok(None),
            r => r?,
        };
        // etcd answers TTL 0 for a lease it no longer has ("lease not found").
        Ok((ttl > 0).then(|| Duration::from_secs(ttl as u64)))
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let mut c = self.client.lease_client();
        match self
            .deadline("lease time-to-live", c.time_to_live(lease.0, None))
            .await
        {
            Ok(r) if r.ttl() > 0 => Ok(Some(Duration::from_secs(r.ttl() as u64))),
            Ok(_) => Ok(None),
            Err(Error::Store { reason, .. }) if reason.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        let mut c = self.client.lease_client();
        match self.deadline("lease revoke", c.revoke(lease.0)).await {
            Err(Error::Store { reason, .. }) if reason.contains("not found") => Ok(()),
            r => r.map(drop),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let mut c = self.client.watch_client();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(from);
        let stream = self
            .deadline("watch", c.watch(self.key(prefix), Some(opts)))
            .await?;
        let this = self.clone();
        // `Some` while the watch lives; the stream owns the request side, which keeps it open.
        let s = futures::stream::unfold(
            (Some(()), stream, this),
            |(watcher, mut stream, this)| async move {
                watcher?;
                loop {
                    let m = match stream.message().await {
                        Ok(Some(m)) => m,
                        Ok(None) => return None,
                        Err(e) => {
                            let err = Error::Store {
                                store: this.describe.clone(),
                                op: "watch",
                                reason: e.to_string(),
                            };
                            return Some((Err(err), (None, stream, this)));
                        }
                    };
                    if m.compact_revision() > 0 {
                        let item = WatchItem::Compacted {
                            compact_revision: m.compact_revision(),
                        };
                        return Some((Ok(item), (None, stream, this)));
                    }
                    if m.canceled() {
                        let e = Error::Store {
                            store: this.describe.clone(),
                            op: "watch",
                            reason: format!("cancelled: {}", m.cancel_reason()),
                        };
                        return Some((Err(e), (None, stream, this)));
                    }
                    let events: Vec<WatchEvent> = m
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            Some(match ev.event_type() {
                                EventType::Put => WatchEvent::Put(this.kv(kv)),
                                EventType::Delete => WatchEvent::Delete {
                                    key: this.strip(kv.key()),
                                    revision: kv.mod_revision(),
                                    lease: ev
                                        .prev_kv()
                                        .filter(|p| p.lease() != 0)
                                        .map(|p| LeaseId(p.lease())),
                                },
                            })
                        })
                        .collect();
                    if !events.is_empty() {
                        return Some((Ok(WatchItem::Events(events)), (watcher, stream, this)));
                    }
                }
            },
        );
        Ok(Box::pin(s.fuse()))
    }
}
