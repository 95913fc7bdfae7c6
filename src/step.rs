//! [`Step`]: the steps of Host's operations, by name — the vocabulary of injected failures
//! ([`crate::FaultHook`], [`crate::Error::Injected`]) and step profiles. Part of the model: it
//! imports nothing of berth but the error type.

use std::fmt;

use crate::error::{Error, Result};

/// The steps of an operation, as named in errors and by a [`crate::FaultHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// The network's subnet was reserved.
    IpamReserve,
    /// The driver created the network's host side.
    DriverCreate,
    /// The firewall added the network's rules.
    FirewallNetwork,
    /// The network record was written.
    PersistNetwork,
    /// The endpoint's address was allocated.
    IpamAllocate,
    /// The driver plumbed the endpoint (veth exists).
    DriverAttach,
    /// A cluster network's endpoint was advertised in the cluster store (after this host was
    /// made to forward to the network's other endpoints).
    ClusterAdvertise,
    /// An encrypted network's ESP SAs and IPsec policies were made (before the endpoint was
    /// advertised).
    ClusterEncryption,
    /// The firewall added the endpoint's ports.
    FirewallEndpoint,
    /// The endpoint's records were committed (durable, in place), before its routing rules
    /// are added and containers linking to it are let through.
    RecordEndpoint,
    /// The endpoint's routing rules were added in the container netns (policy routing; after
    /// its record was written, before the step that follows it).
    PolicyRules,
    /// The endpoint record was written.
    PersistEndpoint,
    /// Detach: the endpoint's published ports left the firewall.
    DetachFirewall,
    /// Detach: the driver removed the endpoint's links.
    DetachDriver,
    /// Detach: the connection-tracking entries of its addresses were deleted.
    DetachConntrack,
    /// Detach: its addresses were released.
    DetachIpam,
    /// Detach: its record was removed.
    DetachRecord,
    /// Network delete: its firewall rules were removed.
    DeleteFirewall,
    /// Network delete: the driver removed its host side.
    DeleteDriver,
    /// Network delete: its address pool was released.
    DeleteIpam,
    /// Network delete: its record was removed.
    DeleteRecord,
    /// Reapply: the firewall was restored from the records.
    Reapply,
    /// gc: corrupt records were repaired.
    GcRepair,
    /// gc: interrupted network removals were finished.
    GcRemovals,
    /// gc: containers not kept were detached.
    GcDetach,
    /// gc: the IPAM was reconciled with the records.
    GcIpam,
    /// gc: links no record keeps were removed.
    GcLinks,
    /// gc: the firewall was made to match the records.
    GcFirewall,
    /// gc: sandbox records and temporary files of gone containers were removed.
    GcSandboxes,
    /// The endpoint's bandwidth limits were put on its host end (attach with limits,
    /// `set_bandwidth`).
    Bandwidth,
}

impl Step {
    /// Every step, in the order operations run them.
    pub const ALL: &[Step] = &[
        Step::IpamReserve,
        Step::DriverCreate,
        Step::FirewallNetwork,
        Step::PersistNetwork,
        Step::IpamAllocate,
        Step::DriverAttach,
        Step::ClusterEncryption,
        Step::ClusterAdvertise,
        Step::FirewallEndpoint,
        Step::RecordEndpoint,
        Step::PolicyRules,
        Step::PersistEndpoint,
        Step::DetachFirewall,
        Step::DetachDriver,
        Step::DetachConntrack,
        Step::DetachIpam,
        Step::DetachRecord,
        Step::DeleteFirewall,
        Step::DeleteDriver,
        Step::DeleteIpam,
        Step::DeleteRecord,
        Step::Reapply,
        Step::GcRepair,
        Step::GcRemovals,
        Step::GcDetach,
        Step::GcIpam,
        Step::GcLinks,
        Step::GcFirewall,
        Step::GcSandboxes,
        Step::Bandwidth,
    ];
}

impl std::str::FromStr for Step {
    type Err = Error;
    /// The name [`Step`]'s `Display` gives (`driver-attach` …).
    fn from_str(s: &str) -> Result<Self> {
        Step::ALL
            .iter()
            .copied()
            .find(|st| st.to_string() == s)
            .ok_or_else(|| Error::invalid("step", s, "not a step name (see Step's Display)"))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::IpamReserve => "ipam-reserve",
            Step::DriverCreate => "driver-create",
            Step::FirewallNetwork => "firewall-network",
            Step::PersistNetwork => "persist-network",
            Step::IpamAllocate => "ipam-allocate",
            Step::DriverAttach => "driver-attach",
            Step::ClusterEncryption => "cluster-encryption",
            Step::ClusterAdvertise => "cluster-advertise",
            Step::FirewallEndpoint => "firewall-endpoint",
            Step::RecordEndpoint => "record-endpoint",
            Step::PolicyRules => "policy-rules",
            Step::PersistEndpoint => "persist-endpoint",
            Step::DetachFirewall => "detach-firewall",
            Step::DetachDriver => "detach-driver",
            Step::DetachConntrack => "detach-conntrack",
            Step::DetachIpam => "detach-ipam",
            Step::DetachRecord => "detach-record",
            Step::DeleteFirewall => "delete-firewall",
            Step::DeleteDriver => "delete-driver",
            Step::DeleteIpam => "delete-ipam",
            Step::DeleteRecord => "delete-record",
            Step::Reapply => "reapply",
            Step::GcRepair => "gc-repair",
            Step::GcRemovals => "gc-removals",
            Step::GcDetach => "gc-detach",
            Step::GcIpam => "gc-ipam",
            Step::GcLinks => "gc-links",
            Step::GcFirewall => "gc-firewall",
            Step::GcSandboxes => "gc-sandboxes",
            Step::Bandwidth => "bandwidth",
        })
    }
}
