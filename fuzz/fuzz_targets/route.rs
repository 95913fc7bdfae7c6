//! `--route` specs: `RouteSpec` (`FromStr`), round trip through `Display`.
#![no_main]

use berth::RouteSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<RouteSpec>() {
        r.validate().expect("a parsed route is valid");
        let shown = r.to_string();
        let again: RouteSpec = shown
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} shown as {shown:?} does not parse: {e}"));
        assert_eq!(again, r, "{s:?} → {shown:?}");
    }
});
