//! The CNI protocol's envelope: the command and its `CNI_*` environment, the spec versions this
//! plugin speaks, and the error object with the spec's codes (CNI spec 1.1, "Error").

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The spec versions berth-cni speaks (what `VERSION` reports), oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// Well-known error codes (CNI spec, "Error"); 100 and up are berth's own.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid environment variables.
    pub const INVALID_ENV: u32 = 7;
    /// Try again later (a transient condition).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// `STATUS`: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// A request berth refused (an address or port in use, a pool exhausted, bad values).
    pub const REFUSED: u32 = 100;
    /// The kernel refused an operation (netlink, nf_tables, namespaces).
    pub const KERNEL: u32 = 101;
    /// berth's state dir could not be read or written.
    pub const STATE: u32 = 102;
    /// A `CHECK` found the attachment differs from what was made.
    pub const CHECK_FAILED: u32 = 103;
}

/// The error object a plugin prints on stdout when it fails (and exits non-zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    /// The version of the configuration it answers (or the newest one spoken).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// One of [`code`].
    pub code: u32,
    /// What was wrong, in one line.
    pub msg: String,
    /// More detail (the cause chain), if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`, answered in the newest version (fixed up later once the
    /// configuration's version is known).
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// With `details`.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Invalid network configuration (code 4).
    pub fn config(msg: impl Into<String>) -> Self {
        CniError::new(code::INVALID_CONFIG, msg)
    }

    /// Invalid environment (code 7).
    pub fn env(msg: impl Into<String>) -> Self {
        CniError::new(code::INVALID_ENV, msg)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// Maps a berth error to the spec's codes: bad input → 4, a transient condition → 11, the
/// kernel → 101, the state dir → 102, any other refusal → 100. The message is berth's, which
/// names what was wrong.
impl From<berth::Error> for CniError {
    fn from(e: berth::Error) -> Self {
        use berth::Error as E;
        let code = match &e {
            E::InvalidName { .. }
            | E::InvalidSubnet { .. }
            | E::InvalidSubnetRange { .. }
            | E::InvalidValue { .. }
            | E::SubnetOverlap { .. }
            | E::Config { .. }
            | E::UnknownOption { .. }
            | E::DriverUnsupported { .. }
            | E::InvalidRateLimit { .. }
            | E::ParentNotFound { .. } => code::INVALID_CONFIG,
            E::Netlink { .. }
            | E::Nftables { .. }
            | E::Netns { .. }
            | E::NotContainerNetns { .. }
            | E::Sysctl { .. }
            | E::Unsupported { .. } => code::KERNEL,
            E::State { .. } | E::StateCorrupt { .. } => code::STATE,
            E::Store { .. } => code::TRY_AGAIN_LATER,
            _ => code::REFUSED,
        };
        let mut details = String::new();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            if !details.is_empty() {
                details.push_str(": ");
            }
            details.push_str(&s.to_string());
            src = s.source();
        }
        CniError::new(code, e.to_string()).details(details)
    }
}

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container.
    Add,
    /// Detach the container (idempotent).
    Del,
    /// Check the attachment is as made.
    Check,
    /// Report the versions spoken.
    Version,
    /// Remove every attachment not in `cni.dev/valid-attachments`.
    Gc,
    /// Whether the plugin can service ADD requests.
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(CniError::env(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, GC, STATUS"
                )));
            }
        })
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; empty or absent on a DEL after the container is gone.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, split into `KEY=VALUE` pairs.
    pub args: Vec<(String, String)>,
}

impl Env {
    /// Reads the variables `cmd` needs through `get` (the process environment in `main`).
    pub fn read(cmd: Command, get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        let required = |k: &str| {
            non_empty(k).ok_or_else(|| CniError::env(format!("{k} is required for this command")))
        };
        let mut env = Env::default();
        match cmd {
            Command::Version | Command::Gc | Command::Status => return Ok(env),
            Command::Add | Command::Check | Command::Del => {
                env.container_id = required("CNI_CONTAINERID")?;
                env.ifname = required("CNI_IFNAME")?;
                env.netns = non_empty("CNI_NETNS").map(PathBuf::from);
                if cmd != Command::Del && env.netns.is_none() {
                    return Err(CniError::env("CNI_NETNS is required for ADD and CHECK"));
                }
            }
        }
        if let Some(args) = non_empty("CNI_ARGS") {
            env.args = parse_args(&args)?;
        }
        Ok(env)
    }

    /// The value of `CNI_ARGS` key `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `CNI_ARGS` (`K=V;K=V`); a pair without `=` is an invalid environment.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::env(format!(
                "CNI_ARGS entry {p:?} is not KEY=VALUE"
            ))),
        })
        .collect()
}

/// Parses a version `major.minor.patch` for comparison.
pub fn version_triple(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (
        it.next()??,
        it.next().unwrap_or(Some(0))?,
        it.next().unwrap_or(Some(0))?,
    );
    it.next().is_none().then_some(t)
}

/// Checks `v` (a configuration's `cniVersion`) is one this plugin answers in.
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "cniVersion {v:?} is not supported: berth-cni speaks {}",
            SUPPORTED_VERSIONS.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn add_needs_id_ifname_and_netns() {
        let e = Env::read(Command::Add, env_of(&[("CNI_IFNAME", "eth0")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_CONTAINERID"));
        let e = Env::read(
            Command::Add,
            env_of(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]),
        )
        .unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"));
    }

    #[test]
    fn del_takes_an_empty_netns() {
        let env = Env::read(
            Command::Del,
            env_of(&[
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", ""),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x"),
            ]),
        )
        .unwrap();
        assert_eq!(env.netns, None);
        assert_eq!(env.arg("K8S_POD_NAME"), Some("x"));
    }

    #[test]
    fn bad_args_and_commands_are_env_errors() {
        assert_eq!(parse_args("IP").unwrap_err().code, code::INVALID_ENV);
        assert_eq!(Command::parse("PUT").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn versions() {
        assert!(check_version("1.1.0").is_ok());
        assert_eq!(
            check_version("0.3.1").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(version_triple("1.0.0"), Some((1, 0, 0)));
        assert_eq!(version_triple("0.4"), Some((0, 4, 0)));
        assert_eq!(version_triple("x"), None);
    }
}
