//! Fault injection in the operations that undo: a failure after each step of detach, network
//! delete, gc and reapply (attach and create: `tests/failures.rs`). After each, the error names
//! the step, and once the operation is retried (or `gc` runs) the kernel and the state dir are
//! exactly as if it had succeeded the first time — read back: links in the host and container
//! netns, every nf_tables object, every record, allocation, index entry and mark.

mod common;

use berth::sandbox::Sandbox;
use berth::{Endpoint, Error, Host, Netns, Network, Port, Step};
use common::*;

/// Whether `e` is, or lists, the injected failure at `step`.
fn names_step(e: &Error, step: Step) -> bool {
    match e {
        Error::Injected { step: s } => *s == step,
        Error::Incomplete { errors, .. } | Error::Detach { errors, .. } => {
            errors.iter().any(|e| names_step(e, step))
        }
        _ => false,
    }
}

/// The footprint plus the container netns' links.
async fn world(sb: &Sandbox, c: &Netns) -> String {
    format!(
        "{}\ncontainer {:?}",
        footprint(sb).await,
        link_names(c).await
    )
}

fn web() -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge("web").subnet("10.91.0.0/24".parse().unwrap())
}

async fn attach_c(host: &Host, c: &Netns) {
    host.attach(
        "web",
        Endpoint::new("c", c.clone())
            .publish(Port::tcp(8080).to(80))
            .alias("svc"),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_detach_step_is_finished_by_a_retry_or_gc() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ft-detach").await;
    let (host, fail_at) = faulty_host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    host.create_network(web()).await.unwrap();
    // The world after one attach and detach that went well (the container's sandbox record
    // goes with its last attachment: nothing else needs it).
    attach_c(&host, &c).await;
    host.detach("web", "c").await.unwrap();
    let clean = world(&sb, &c).await;
    let steps = [
        Step::DetachFirewall,
        Step::DetachDriver,
        Step::DetachConntrack,
        Step::DetachIpam,
        Step::DetachRecord,
    ];
    for (i, step) in steps.into_iter().enumerate() {
        attach_c(&host, &c).await;
        *fail_at.lock().unwrap() = Some(step);
        let e = host.detach("web", "c").await.unwrap_err();
        assert!(names_step(&e, step), "{step}: {e}");
        *fail_at.lock().unwrap() = None;
        // Half of the time the runtime retries; the other half it runs gc, still counting the
        // container as alive: the detach it started is finished all the same.
        if i % 2 == 0 {
            host.detach("web", "c").await.unwrap();
        } else {
            host.gc(&["c"]).await.unwrap();
        }
        assert_eq!(world(&sb, &c).await, clean, "after a failure at {step}");
    }
    // And the next attach works, with traffic.
    attach_c(&host, &c).await;
    assert_reaches(
        &c,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_delete_step_is_finished_by_a_retry_or_gc() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("ft-delete").await;
    let (host, fail_at) = faulty_host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    // The world after one create and delete that went well (berth's base tables stay).
    host.create_network(Network::bridge("web")).await.unwrap();
    host.delete_network("web").await.unwrap();
    let empty = world(&sb, &c).await;
    let steps = [
        Step::DeleteFirewall,
        Step::DeleteDriver,
        Step::DeleteIpam,
        Step::DeleteRecord,
    ];
    for (i, step) in steps.into_iter().enumerate() {
        // A network made from the pools, so the subnet must come back to them.
        host.create_network(Network::bridge("web")).await.unwrap();
        *fail_at.lock().unwrap() = Some(step);
        let e = host.delete_network("web").await.unwrap_err();
        assert!(names_step(&e, step), "{step}: {e}");
        *fail_at.lock().unwrap() = None;
        if step != Step::DeleteRecord {
            // Half-removed: not listed, takes no endpoints.
            assert!(host.networks().await.unwrap().is_empty(), "{step}");
            let e = host
                .attach("web", Endpoint::new("c", c.clone()))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::NetworkNotFound { .. }), "{step}: {e}");
        }
        if i % 2 == 0 {
            match host.delete_network("web").await {
                Ok(()) | Err(Error::NetworkNotFound { .. }) => {}
                Err(e) => panic!("{step}: retry: {e}"),
            }
        } else {
            host.gc::<&str>(&[]).await.unwrap();
        }
        assert_eq!(world(&sb, &c).await, empty, "after a failure at {step}");
    }
    // The pools got every subnet back: the same create picks the first one again.
    let first = host.create_network(Network::bridge("web")).await.unwrap();
    assert_eq!(first.subnets[0].subnet.to_string(), "172.17.0.0/16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_gc_step_is_finished_by_the_next_gc() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ft-gc").await;
    let (host, fail_at) = faulty_host(&sb).await;
    let live = sb.netns("live").await.unwrap();
    let dead = sb.netns("dead").await.unwrap();
    host.create_network(web()).await.unwrap();
    host.attach(
        "web",
        Endpoint::new("live", live.clone()).publish(Port::tcp(8081).to(80)),
    )
    .await
    .unwrap();
    let want = world(&sb, &dead).await;
    let steps = [
        Step::GcRepair,
        Step::GcRemovals,
        Step::GcDetach,
        Step::GcIpam,
        Step::GcLinks,
        Step::GcFirewall,
        Step::GcSandboxes,
    ];
    for step in steps {
        // Something for gc to do: a container that is gone, with a port and a name.
        host.attach(
            "web",
            Endpoint::new("dead", dead.clone())
                .publish(Port::tcp(8082).to(80))
                .alias("gone"),
        )
        .await
        .unwrap();
        *fail_at.lock().unwrap() = Some(step);
        let e = host.gc(&["live"]).await.unwrap_err();
        assert!(names_step(&e, step), "{step}: {e}");
        *fail_at.lock().unwrap() = None;
        host.gc(&["live"]).await.unwrap();
        assert_eq!(world(&sb, &dead).await, want, "after a failure at {step}");
    }
    assert_reaches(
        &live,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8081")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_reapply_is_made_good_by_the_next() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ft-reapply").await;
    let (host, fail_at) = faulty_host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    host.create_network(web()).await.unwrap();
    attach_c(&host, &c).await;
    let want = world(&sb, &c).await;
    let nft = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", sb.host_name(), "nft"])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success());
    };
    nft(&["flush", "ruleset"]);
    *fail_at.lock().unwrap() = Some(Step::Reapply);
    let e = host.reapply().await.unwrap_err();
    assert!(names_step(&e, Step::Reapply), "{e}");
    *fail_at.lock().unwrap() = None;
    host.reapply().await.unwrap();
    assert_eq!(world(&sb, &c).await, want);
    assert!(host.check_firewall().await.unwrap().is_empty());
    assert_reaches(
        &c,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
}
