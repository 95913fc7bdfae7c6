//! The six CNI verbs over berth's [`Host`]: each one builds the host over the runtime's netns
//! and the configuration's state dir, then does what a runtime library call would. berth's own
//! guarantees carry over: ADD is all-or-nothing, concurrent invocations serialise on the state
//! dir's lock, and GC reconciles whatever a killed invocation left.

use std::net::IpAddr;
use std::path::Path;

use berth::{Attachment, DriverOptions, Endpoint, Error, Host, Netns, NetworkInfo, NoFirewall};
use serde_json::{Value, json};

use crate::config::{DEFAULT_STATE_DIR, DnsConf, NetConf};
use crate::protocol::{CniError, Env, SUPPORTED_VERSIONS, code};
use crate::result::{ResultBuilder, prev_addresses};

/// `CNI_ARGS` keys berth-cni understands or that runtimes send for information.
const KNOWN_ARGS: &[&str] = &[
    "IP",
    "MAC",
    "IgnoreUnknown",
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// The host over the calling netns and the configuration's state dir.
async fn host(conf: &NetConf) -> Result<Host, CniError> {
    let dir = conf
        .state_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    // One verb per process: a deleted link's tail is left to a child (see short_lived).
    let mut b = Host::builder()
        .state_dir(dir)
        .netns(Netns::current()?)
        .short_lived(true);
    if conf.firewall == Some(false) {
        b = b.firewall(NoFirewall);
    }
    if let Some(hook) = crash_hook()? {
        b = b.fault_hook(hook);
    }
    Ok(b.build().await?)
}

/// Testing aid for the crash campaign (`cni/tests/crash.rs`), as netctl's:
/// `BERTH_CRASH_AT=STEP` kills the plugin with SIGKILL right after `STEP` (a [`berth::Step`]
/// name such as `driver-attach`), as a `kill -9` landing there would.
fn crash_hook() -> Result<Option<berth::FaultHook>, CniError> {
    let Ok(name) = std::env::var("BERTH_CRASH_AT") else {
        return Ok(None);
    };
    let step: berth::Step = name
        .parse()
        .map_err(|e: Error| CniError::env(format!("BERTH_CRASH_AT: {e}")))?;
    Ok(Some(std::sync::Arc::new(move |s: berth::Step| {
        if s == step {
            // SAFETY: raising a signal has no preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        Ok(())
    })))
}

/// `VERSION`: the versions spoken, answered in the one asked (the newest when none).
pub fn version(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string());
    json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS})
}

/// `CNI_ARGS` keys that are neither known nor allowed by `IgnoreUnknown` are refused.
fn check_args(env: &Env) -> Result<(), CniError> {
    let ignore = env
        .arg("IgnoreUnknown")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if ignore {
        return Ok(());
    }
    match env
        .args
        .iter()
        .find(|(k, _)| !KNOWN_ARGS.contains(&k.as_str()))
    {
        Some((k, _)) => Err(CniError::env(format!(
            "CNI_ARGS key {k:?} is unknown (known: {}; IgnoreUnknown=1 ignores others)",
            KNOWN_ARGS.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The network named by the configuration, made on first use. An existing one must match
/// what the configuration asks for; if it does not and has no attachments it is made again,
/// otherwise the mismatch is an invalid configuration naming each difference.
async fn ensure_network(host: &Host, conf: &NetConf) -> Result<NetworkInfo, CniError> {
    let spec = conf.network_spec()?;
    match host.network(&conf.name).await {
        Ok(info) => {
            let diffs = differences(&info, conf);
            if diffs.is_empty() {
                return Ok(info);
            }
            if !host.endpoints(&conf.name).await?.is_empty() {
                return Err(CniError::config(format!(
                    "network {:?} exists with other settings ({}) and has attachments: \
                     remove them before changing its configuration",
                    conf.name,
                    diffs.join("; ")
                )));
            }
            match host.delete_network(&conf.name).await {
                Ok(()) | Err(Error::NetworkNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::NetworkNotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match host.create_network(spec).await {
        Ok(info) => Ok(info),
        // Another invocation made it first.
        Err(Error::NetworkExists { .. }) => Ok(host.network(&conf.name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Where an existing network differs from the configuration (empty: it matches).
fn differences(info: &NetworkInfo, conf: &NetConf) -> Vec<String> {
    let mut d = Vec::new();
    let Ok(spec) = conf.network_spec() else {
        return vec!["the configuration is invalid".into()];
    };
    if spec.driver().kind() != info.driver.kind() {
        d.push(format!(
            "driver {} vs {}",
            info.driver.kind().name(),
            spec.driver().kind().name()
        ));
    }
    let asked = spec.subnet_requests();
    if asked.iter().any(|r| r.subnet.is_some()) {
        let have: Vec<String> = info.subnets.iter().map(|s| s.subnet.to_string()).collect();
        for r in &asked {
            let Some(subnet) = r.subnet else { continue };
            match info.subnets.iter().find(|s| s.subnet == subnet) {
                None => d.push(format!("subnets {} vs {subnet}", have.join(","))),
                Some(s) => {
                    if r.gateway.is_some_and(|g| g != s.gateway) {
                        d.push(format!("gateway of {subnet}: {}", s.gateway));
                    }
                    if r.ip_range.is_some() && r.ip_range != s.ip_range {
                        d.push(format!("ipRange of {subnet}"));
                    }
                }
            }
        }
    }
    if info.internal != conf.internal {
        d.push(format!("internal {} vs {}", info.internal, conf.internal));
    }
    if let Some(mtu) = conf.mtu
        && mtu != info.mtu
    {
        d.push(format!("mtu {} vs {mtu}", info.mtu));
    }
    if let (DriverOptions::Bridge(a), DriverOptions::Bridge(b)) = (&info.driver, spec.driver()) {
        if a.icc != b.icc {
            d.push(format!("icc {} vs {}", a.icc, b.icc));
        }
        if a.masquerade != b.masquerade {
            d.push(format!("ipMasq {} vs {}", a.masquerade, b.masquerade));
        }
        if let Some(want) = &b.bridge_name
            && info.device.as_deref() != Some(want.as_str())
        {
            d.push(format!(
                "bridge {} vs {want}",
                info.device.as_deref().unwrap_or("?")
            ));
        }
    }
    d
}

/// The DNS to report: the configuration's, with the runtime's (`dns` capability) over it.
fn dns(conf: &NetConf) -> Option<DnsConf> {
    let mut d = conf.dns.clone().unwrap_or_default();
    if let Some(rt) = &conf.runtime_config.dns {
        if !rt.servers.is_empty() {
            d.nameservers = rt.servers.clone();
        }
        if !rt.searches.is_empty() {
            d.search = rt.searches.clone();
        }
        if !rt.options.is_empty() {
            d.options = rt.options.clone();
        }
    }
    (d != DnsConf::default()).then_some(d)
}

fn netns_of(env: &Env) -> Result<(Netns, String), CniError> {
    let path = env.netns.as_deref().expect("checked by Env::read");
    if !path.exists() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS {} does not exist", path.display()),
        ));
    }
    Ok((Netns::from_path(path)?, path.display().to_string()))
}

/// `ADD`.
pub async fn add(conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    check_args(env)?;
    let (netns, sandbox) = netns_of(env)?;
    // Everything the request asks for is checked before anything is made.
    let ips = conf.requested_ips(env.arg("IP"))?;
    let mac = conf.requested_mac(env.arg("MAC"))?;
    let ports = conf.port_requests()?;
    let bandwidth = conf
        .runtime_config
        .bandwidth
        .map(|b| b.limits())
        .transpose()?
        .flatten();
    let vlan = conf.endpoint_vlan()?;
    let host = host(conf).await?;
    let net = ensure_network(&host, conf).await?;
    let mut ep = Endpoint::new(env.container_id.clone(), netns).ifname(env.ifname.clone());
    let (mut v4, mut v6) = (false, false);
    for ip in ips {
        match ip {
            IpAddr::V4(a) if !v4 => {
                ep = ep.ip(a);
                v4 = true;
            }
            IpAddr::V6(a) if !v6 => {
                ep = ep.ip6(a);
                v6 = true;
            }
            _ => {
                return Err(CniError::config(format!(
                    "requested ips: more than one {} address ({ip})",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                )));
            }
        }
    }
    if let Some(mac) = mac {
        ep = ep.mac(mac);
    }
    for p in ports {
        ep = ep.publish_request(p);
    }
    for a in conf.aliases() {
        ep = ep.alias(a.clone());
    }
    if let Some(b) = bandwidth {
        ep = ep.bandwidth(b);
    }
    if let Some(v) = vlan {
        ep = ep.vlan(v);
    }
    let att = host.attach(&net.name, ep).await?;
    let net = host.network(&net.name).await?;
    ResultBuilder {
        att: &att,
        net: &net,
        sandbox: &sandbox,
        dns: dns(conf),
        prev: conf.prev_result.as_ref(),
    }
    .render(&conf.cni_version)
}

/// The attachment of `env`'s container and interface on the configuration's network.
fn attachment(host: &Host, conf: &NetConf, env: &Env) -> Result<Option<Attachment>, CniError> {
    Ok(host
        .state()
        .endpoint(&conf.name, &env.container_id)?
        .filter(|a| a.ifname == env.ifname))
}

/// `DEL`: idempotent — an unknown network, container or interface, and a netns already gone,
/// are all success.
pub async fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    if !Path::new(
        conf.state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
    )
    .exists()
    {
        return Ok(());
    }
    let host = host(conf).await?;
    // Another interface of the same container is another attachment: not this DEL's.
    if let Some(a) = host.state().endpoint(&conf.name, &env.container_id)?
        && a.ifname != env.ifname
    {
        return Ok(());
    }
    // No record: detach still finishes a detach killed after its record went.
    match host.detach(&conf.name, &env.container_id).await {
        Ok(()) | Err(Error::NetworkNotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `CHECK`: the attachment exists, the kernel still has all of it, the network still matches
/// the configuration, and the addresses are the ones the previous result reported.
pub async fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    check_args(env)?;
    let _ = netns_of(env)?;
    let host = host(conf).await?;
    let info = match host.network(&conf.name).await {
        Ok(i) => i,
        Err(Error::NetworkNotFound { .. }) => {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("network {:?} does not exist", conf.name),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let diffs = differences(&info, conf);
    if !diffs.is_empty() {
        return Err(CniError::config(format!(
            "network {:?} differs from its configuration: {}",
            conf.name,
            diffs.join("; ")
        )));
    }
    let Some(att) = attachment(&host, conf, env)? else {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "container {} has no interface {} on network {:?}",
                env.container_id, env.ifname, conf.name
            ),
        ));
    };
    let mut problems = host.check(&conf.name, &env.container_id).await?;
    if let Some(prev) = &conf.prev_result {
        let mut want = prev_addresses(prev, &env.ifname);
        let mut have: Vec<String> = att
            .ipv4
            .map(|a| a.to_string())
            .into_iter()
            .chain(att.ipv6.map(|a| a.to_string()))
            .collect();
        want.sort();
        have.sort();
        if want != have {
            problems.push(format!(
                "addresses {} (prevResult says {})",
                have.join(","),
                want.join(",")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "container {} on network {:?}: missing or different: {}",
                env.container_id,
                conf.name,
                problems.join("; ")
            ),
        ))
    }
}

/// `GC`: detaches every attachment of this network not in `cni.dev/valid-attachments` (or its
/// draft name `cni.dev/attachments`), then reconciles the host as `Host::gc` does (links,
/// addresses and port elements of killed invocations). No list at all means none is valid, as
/// libcni means it: its `GCNetworkList` without arguments DELs every cached attachment, then
/// sends the GC without a list (cnitool's `gc`).
pub async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf
        .valid_attachments
        .clone()
        .or_else(|| conf.attachments.clone())
        .unwrap_or_default();
    let host = host(conf).await?;
    host.gc_keeping(|net, att| {
        net.name != conf.name
            || valid
                .iter()
                .any(|v| v.container_id == att.container && v.ifname == att.ifname)
    })
    .await?;
    Ok(())
}

/// `STATUS`: ready when the state dir opens and reads and nf_tables answers (unless the
/// configuration turns the firewall off).
pub async fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |what: &str, e: CniError| {
        CniError::new(code::NOT_AVAILABLE, format!("{what}: {}", e.msg)).details(e.details)
    };
    let host = host(conf)
        .await
        .map_err(|e| unavailable("berth cannot open its state", e))?;
    host.networks()
        .await
        .map_err(|e| unavailable("berth cannot read its state", e.into()))?;
    if conf.firewall != Some(false) {
        host.check_firewall()
            .await
            .map_err(|e| unavailable("nf_tables does not answer", e.into()))?;
    }
    Ok(())
}
