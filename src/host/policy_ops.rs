//! Policy routing of an endpoint ([`crate::rule`]): its routing rules in the container netns,
//! added at attach once the interface, its addresses and its routes (those of other tables
//! too) exist, and after its record is written — so a process killed at any instant leaves no
//! rule that no record names: `gc` removes the rules of what it does not keep (while the netns
//! exists) and adds back the missing rules of what it keeps (a kill between the record and the
//! rules). Rules are not tied to a link: detach deletes exactly those recorded,
//! one by one. Routes in other tables go with the interface, as the main table's do.

use crate::endpoint::{Attachment, EndpointSpec};
use crate::error::{Error, Result};
use crate::netlink::{Family, Netlink};
use crate::netns::Netns;
use crate::rule::RuleSpec;

use super::Host;
use super::journal::{Journal, Undo};

/// Refuses rules for a container netns berth cannot open again at detach (one given by a
/// file descriptor, not a path): they would outlive the attachment.
pub(super) fn check_reachable(ep: &EndpointSpec) -> Result<()> {
    match (ep.rules.first(), ep.netns.path()) {
        (Some(r), None) => Err(Error::invalid(
            "rule",
            r,
            "needs a container netns opened by path (berth opens it again to delete the rule at detach)",
        )),
        _ => Ok(()),
    }
}

/// Adds `rules` through `nl` in order; those added are journalled (a failed attach deletes
/// them, and only them).
pub(super) async fn add_rules(
    nl: &Netlink,
    rules: &[RuleSpec],
    journal: &mut Journal,
) -> Result<()> {
    let mut added = Vec::new();
    let mut res = Ok(());
    for r in rules {
        match nl.rule().add(r).await {
            Ok(()) => added.push(r.clone()),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if !added.is_empty() {
        journal.push(Undo::PolicyRules(nl.clone(), added));
    }
    res
}

/// Deletes `rules` through `nl` (each one already gone is fine); the first error, after trying
/// them all.
pub(super) async fn delete_rules(nl: &Netlink, rules: &[RuleSpec]) -> Result<()> {
    let mut first = None;
    for r in rules.iter().rev() {
        if let Err(e) = nl.rule().del(r).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The container netns of `att`, when it still exists (by its recorded path).
fn container_netns(att: &Attachment) -> Option<Netns> {
    att.netns.as_ref().and_then(|p| Netns::from_path(p).ok())
}

impl Host {
    /// Detach: deletes the rules of `att` in its container netns; nothing to do when it has
    /// none or the netns is gone (its rules went with it).
    pub(super) async fn remove_policy_rules(&self, att: &Attachment) -> Result<()> {
        if att.rules.is_empty() {
            return Ok(());
        }
        let Some(ns) = container_netns(att) else {
            return Ok(());
        };
        let nl = self.kernel.open(&ns).await?;
        delete_rules(&nl, &att.rules).await
    }

    /// `gc`, for a kept attachment: adds the recorded rules of `att` its container netns lacks
    /// (an attach killed after its record, before its rules); how many. Nothing to do when it
    /// has none or the netns is gone.
    pub(super) async fn restore_policy_rules(&self, att: &Attachment) -> Result<usize> {
        if att.rules.is_empty() {
            return Ok(0);
        }
        let Some(ns) = container_netns(att) else {
            return Ok(0);
        };
        let nl = self.kernel.open(&ns).await?;
        let have = nl.rule().list().await?;
        let mut added = 0;
        for r in att.rules.iter().filter(|r| !have.iter().any(|h| h.is(r))) {
            nl.rule().add(r).await?;
            added += 1;
        }
        Ok(added)
    }

    /// `check`: the recorded rules of `att` and its routes in other tables that are missing
    /// from its container netns (a gone netns is reported by the interface check).
    pub(super) async fn check_policy(&self, att: &Attachment) -> Result<Vec<String>> {
        let tabled: Vec<_> = att.routes.iter().filter(|r| r.table.is_some()).collect();
        if att.rules.is_empty() && tabled.is_empty() {
            return Ok(Vec::new());
        }
        let (Some(ns), Some(path)) = (container_netns(att), &att.netns) else {
            return Ok(Vec::new());
        };
        let nl = self.kernel.open(&ns).await?;
        let mut missing = Vec::new();
        if !att.rules.is_empty() {
            let have = nl.rule().list().await?;
            for r in &att.rules {
                if !have.iter().any(|h| h.is(r)) {
                    missing.push(format!("rule {r} in {}", path.display()));
                }
            }
        }
        if !tabled.is_empty() {
            let have = nl.kernel().routes().await?;
            for r in tabled {
                let family = Family::of(r.dst.addr());
                let len = r.dst.prefix_len();
                let found = have.iter().any(|h| {
                    h.family == family
                        && Some(h.table) == r.table
                        && h.prefix_len == len
                        && (len == 0 || h.dst == Some(r.dst.addr()))
                });
                if !found {
                    missing.push(format!("route {r} in {}", path.display()));
                }
            }
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::RuleOp;
    use crate::netlink::fake::{Call, FakeNet};

    fn rule(s: &str) -> RuleSpec {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_failed_add_journals_only_the_rules_it_added_and_undo_deletes_exactly_those() {
        let net = FakeNet::new();
        let nl = net.handle("c1");
        // Somebody else's rule, identical in all but the priority the kernel picks.
        nl.rule()
            .add(&rule("from=10.1.0.9/32,table=100"))
            .await
            .unwrap();
        let ours = [
            rule("from=10.1.0.2/32,table=100,priority=100"),
            rule("to=10.9.0.0/16,fwmark=0x1/0xff,iif=eth1,table=300,priority=101"),
            rule("from=fd00::2/128,table=100,priority=102"),
        ];
        net.fail_nth(
            1,
            |_, c| matches!(c, Call::Rule(RuleOp::Add, r) if r.table == 300),
            libc::ENOBUFS,
        );
        let mut journal = Journal::default();
        let e = add_rules(&nl, &ours, &mut journal).await.unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOBUFS));
        assert_eq!(
            net.rules("c1").len(),
            2,
            "the other one and the first of ours"
        );
        let Some(Undo::PolicyRules(_, added)) = journal.0.last() else {
            panic!("no undo journalled: {journal:?}");
        };
        assert_eq!(added, &ours[..1]);
        delete_rules(&nl, added).await.unwrap();
        let left = net.rules("c1");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].rule.from, Some("10.1.0.9/32".parse().unwrap()));

        // All added: each is listed as asked (both families), and deleting twice is fine.
        let mut journal = Journal::default();
        add_rules(&nl, &ours, &mut journal).await.unwrap();
        let have = nl.rule().list().await.unwrap();
        assert!(ours.iter().all(|r| have.iter().any(|h| h.is(r))));
        assert_eq!(have.iter().filter(|h| h.family == Family::V6).count(), 1);
        delete_rules(&nl, &ours).await.unwrap();
        delete_rules(&nl, &ours).await.unwrap();
        assert_eq!(net.rules("c1").len(), 1);
    }
}
