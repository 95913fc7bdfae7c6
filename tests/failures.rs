//! Failure semantics: bad input changes nothing; a failure at any step of an operation leaves
//! nothing behind; state survives the `Host` that made it; detach works without the netns.

mod common;

use berth::{Endpoint, Error, FileIpam, Host, Ipam, Network, Port, Step};
use common::*;

fn web() -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge("web").subnet("10.88.0.0/24".parse().unwrap())
}

/// Everything berth could have left in the kernel and on disk, for before/after comparisons.
async fn snapshot(sb: &berth::sandbox::Sandbox, host: &Host, c: &berth::Netns) -> String {
    let ipam = FileIpam::new(sb.state_dir().join("ipam"));
    let mut allocs = Vec::new();
    for n in host.networks().await.unwrap() {
        if let Some(p) = ipam.pool(&n.name).await.unwrap() {
            allocs.push(format!("{}:{:?}", n.name, p.allocations()));
        }
        for a in host.endpoints(&n.name).await.unwrap() {
            allocs.push(format!("ep {}/{}", n.name, a.container));
        }
    }
    format!(
        "host links {:?}\ncontainer links {:?}\nchains {:?}\nrules {}\npm4_any {} pm4_ip {} post {}\nstate {:?}",
        link_names(sb.host()).await,
        link_names(c).await,
        chain_names(sb),
        rule_count(sb),
        map_len(sb, "pm4_any"),
        map_len(sb, "pm4_ip"),
        map_len(sb, "post_by_iif"),
        allocs
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_typed_error_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-bad").await;
    let host = host(&sb).await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let net = host.create_network(web()).await.unwrap();
    host.attach(
        &net,
        Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await
    .unwrap();
    let before = snapshot(&sb, &host, &c2).await;

    let e = host
        .create_network(Network::bridge("n2").subnet("10.90.0.1/24".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidSubnet { .. }), "{e}");
    let e = host
        .create_network(
            Network::bridge("n2")
                .subnet("10.90.0.0/24".parse().unwrap())
                .gateway("10.91.0.1".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
    let e = host
        .create_network(Network::bridge("web").subnet("10.92.0.0/24".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NetworkExists { name } if name == "web"),
        "{e}"
    );
    let e = host
        .create_network(Network::bridge("n3").subnet("10.88.0.0/16".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::SubnetOverlap { network, .. } if network == "web"),
        "{e}"
    );
    let e = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ifname("a-very-long-ifname"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidName {
                kind: "interface",
                ..
            }
        ),
        "{e}"
    );
    let e = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ip("10.99.0.5".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
    let e = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ip("10.88.0.2".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AddressInUse { container, .. } if container == "c1"),
        "{e}"
    );
    let e = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).publish(Port::tcp(8080).to(81)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::PortInUse { container, network, .. } if container == "c1" && network == "web"),
        "{e}"
    );
    assert!(
        e.to_string().contains("c1"),
        "the message names the owner: {e}"
    );
    let e = host
        .attach("nope", Endpoint::new("c2", c2.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NetworkNotFound { .. }), "{e}");
    let e = host
        .attach(&net, Endpoint::new("c1", c2.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EndpointExists { .. }), "{e}");

    assert_eq!(
        snapshot(&sb, &host, &c2).await,
        before,
        "a refused operation changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_attach_step_leaves_nothing() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-rb").await;
    let (host, fail_at) = faulty_host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let net = host.create_network(web()).await.unwrap();
    let clean = snapshot(&sb, &host, &c).await;
    for step in [
        Step::IpamAllocate,
        Step::DriverAttach,
        Step::FirewallEndpoint,
        Step::RecordEndpoint,
        Step::PersistEndpoint,
    ] {
        *fail_at.lock().unwrap() = Some(step);
        let e = host
            .attach(
                &net,
                Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Injected { step: s } if s == step),
            "{step}: {e}"
        );
        assert_eq!(
            snapshot(&sb, &host, &c).await,
            clean,
            "leak after a failure at {step}"
        );
    }
    // With no fault the same attach works, and traffic flows.
    *fail_at.lock().unwrap() = None;
    host.attach(
        &net,
        Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await
    .unwrap();
    assert_reaches(
        &c,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    host.detach(&net, "c").await.unwrap();
    assert_eq!(snapshot(&sb, &host, &c).await, clean);
    host.delete_network(&net).await.unwrap();

    let empty = snapshot(&sb, &host, &c).await;
    for step in [
        Step::IpamReserve,
        Step::DriverCreate,
        Step::FirewallNetwork,
        Step::PersistNetwork,
    ] {
        *fail_at.lock().unwrap() = Some(step);
        let e = host.create_network(web()).await.unwrap_err();
        assert!(
            matches!(e, Error::Injected { step: s } if s == step),
            "{step}: {e}"
        );
        assert_eq!(
            snapshot(&sb, &host, &c).await,
            empty,
            "leak after a failure at {step}"
        );
        assert!(!sb.state_dir().join("ipam/web.json").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_over_the_same_state_dir_detaches_what_the_first_made() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-persist").await;
    let c = sb.netns("c").await.unwrap();
    {
        let first = host(&sb).await;
        let net = first.create_network(web()).await.unwrap();
        first
            .attach(
                &net,
                Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
            )
            .await
            .unwrap();
    }
    let second = host(&sb).await;
    let nets = second.networks().await.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(second.endpoints("web").await.unwrap()[0].container, "c");
    assert!(second.check("web", "c").await.unwrap().is_empty());
    assert_reaches(
        &c,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    second.detach("web", "c").await.unwrap();
    second.delete_network("web").await.unwrap();
    assert_eq!(
        link_names(sb.host()).await,
        vec!["lo".to_string(), "uplink".to_string()]
    );
    assert_eq!(map_len(&sb, "pm4_any"), 0);
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_works_when_the_container_netns_is_gone() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-gone").await;
    let host = host(&sb).await;
    let net = host.create_network(web()).await.unwrap();
    let c = sb.netns("c").await.unwrap();
    let att = host
        .attach(&net, Endpoint::new("c", c).publish(Port::udp(5353).to(53)))
        .await
        .unwrap();
    let veth = att.host_ifname.unwrap();
    // The container dies: its netns goes away (the last handle was moved into attach).
    berth::Netns::remove_named(sb.netns_path("c").file_name().unwrap().to_str().unwrap()).unwrap();
    for _ in 0..100 {
        if !link_names(sb.host()).await.contains(&veth) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    host.detach(&net, "c").await.unwrap();
    assert!(host.endpoints(&net).await.unwrap().is_empty());
    assert_eq!(map_len(&sb, "pm4_any"), 0);
    let ipam = FileIpam::new(sb.state_dir().join("ipam"));
    assert!(
        ipam.pool("web")
            .await
            .unwrap()
            .unwrap()
            .allocations()
            .is_empty()
    );
    host.delete_network(&net).await.unwrap();
}
