//! `berth-cni`: berth as a CNI plugin (spec 0.4.0, 1.0.0, 1.1.0: ADD, DEL, CHECK, VERSION, GC,
//! STATUS). A thin layer over the library, like netctl: it parses the CNI protocol into berth's
//! typed builders and prints the result, or the spec's error object, on stdout.
//!
//! | module | holds |
//! |---|---|
//! | [`protocol`] | the command, the `CNI_*` environment, versions, the error object and codes |
//! | [`config`] | the network configuration and `runtimeConfig`, parsed into berth's builders |
//! | [`delegated_ipam`] | a `host-local` or `static` `ipam` section translated into berth's IPAM |
//! | [`result`] | the ADD result in the version asked, chained onto `prevResult` |
//! | [`verbs`] | the six verbs over `berth::Host` |
//!
//! The configuration's keys are documented in the repository's README ("Use with podman /
//! containerd").

mod config;
mod delegated_ipam;
mod protocol;
mod result;
mod verbs;

use std::io::{Read, Write};
use std::process::ExitCode;

use config::NetConf;
use protocol::{CniError, Command, Env, check_version, code};
use serde_json::Value;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("reading stdin: {e}")))
        .and_then(|_| run(&stdin));
    let (out, ok) = match outcome {
        Ok(Some(v)) => (Some(v), true),
        Ok(None) => (None, true),
        Err(mut e) => {
            if let Some(v) = asked_version(&stdin) {
                e.cni_version = v;
            }
            (Some(serde_json::to_value(e).expect("plain struct")), false)
        }
    };
    if let Some(v) = out {
        let mut o = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut o, &v);
        let _ = o.write_all(b"\n");
        let _ = o.flush();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The configuration's `cniVersion`, when it is one berth-cni speaks (errors answer in it).
fn asked_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let v = v.get("cniVersion")?.as_str()?;
    check_version(v).ok().map(|()| v.to_string())
}

/// One invocation: the command from the environment, the configuration from stdin.
fn run(stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let cmd = Command::parse(&std::env::var("CNI_COMMAND").unwrap_or_default())?;
    if cmd == Command::Version {
        return Ok(Some(verbs::version(stdin)));
    }
    let env = Env::read(cmd, |k| std::env::var(k).ok())?;
    let conf = NetConf::parse(stdin)?;
    check_version(&conf.cni_version)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("starting the runtime: {e}")))?;
    rt.block_on(async {
        match cmd {
            Command::Add => verbs::add(&conf, &env).await.map(Some),
            Command::Del => verbs::del(&conf, &env).await.map(|()| None),
            Command::Check => verbs::check(&conf, &env).await.map(|()| None),
            Command::Gc => verbs::gc(&conf).await.map(|()| None),
            Command::Status => verbs::status(&conf).await.map(|()| None),
            Command::Version => unreachable!("answered above"),
        }
    })
}
