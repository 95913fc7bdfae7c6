//! `--add-host` and `--link`: `ExtraHost` and `Link` (`FromStr`), then the validation of the
//! name options they end up in.
#![no_main]

use berth::{ExtraHost, Link, NameOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut names = NameOptions::default();
    if let Ok(h) = s.parse::<ExtraHost>() {
        let again = format!("{}:{}", h.name, h.addr).parse::<ExtraHost>();
        assert_eq!(again.ok().as_ref(), Some(&h), "{s:?}");
        names.extra_hosts.push(h);
    }
    if let Ok(l) = s.parse::<Link>() {
        let shown = match &l.alias {
            Some(a) => format!("{}:{a}", l.container),
            None => l.container.clone(),
        };
        assert_eq!(shown.parse::<Link>().ok().as_ref(), Some(&l), "{s:?}");
        names.links.push(l);
    }
    let _ = names.validate();
    let _ = names.merged(&NameOptions::default());
});
