//! Validators of the names berth turns into kernel objects and file names: network names and
//! container ids (they become file names in the state dir), interface names (`IFNAMSIZ`). Pure;
//! every error names the kind of name, the name and what is wrong with it.

use crate::error::{Error, Result};

/// Network names: 1–64 of `[A-Za-z0-9_.-]`, starting with a letter or digit (Docker's rule).
pub fn validate_network_name(name: &str) -> Result<()> {
    validate_id("network", name)
}

/// Other ids (aux address names, netns and host names) follow the same rule as network names
/// (they become file names and keys).
pub(crate) fn validate_id(kind: &'static str, name: &str) -> Result<()> {
    validate_word(kind, name, 64)
}

/// Container ids: the same characters, up to 128 (a 64-hex id with a prefix, as containerd's
/// `CNI_CONTAINERID` `<namespace>-<id>`, still fits a file name with room to spare).
pub(crate) fn validate_container_id(kind: &'static str, name: &str) -> Result<()> {
    validate_word(kind, name, 128)
}

fn validate_word(kind: &'static str, name: &str, max: usize) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > max {
        return Err(bad(if max == 64 {
            "must be 1-64 characters"
        } else {
            "must be 1-128 characters"
        }));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(bad("may only contain letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// Interface names: 1–15 bytes (IFNAMSIZ − 1), no '/', ':', whitespace, not "." or "..".
pub fn validate_ifname(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad("must be 1-15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("must not be . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad("must not contain '/', ':' or whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_may_be_longer_than_other_ids() {
        let ctr = format!("default-{}", "a".repeat(64));
        assert!(validate_container_id("container", &ctr).is_ok());
        assert!(validate_id("network", &ctr).is_err());
        assert!(validate_container_id("container", &"a".repeat(129)).is_err());
        assert!(validate_container_id("container", "-x").is_err());
    }
}
