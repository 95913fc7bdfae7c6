//! `--mac-address`: `MacAddr` (`FromStr`, and its serde form in records), round trip through
//! `Display`.
#![no_main]

use berth::MacAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(m) = s.parse::<MacAddr>()
    {
        let shown = m.to_string();
        assert_eq!(shown.parse::<MacAddr>().ok(), Some(m), "{s:?} → {shown:?}");
        assert!(shown.eq_ignore_ascii_case(s), "{s:?} → {shown:?}");
        let _ = m.validate();
    }
    if let Ok(m) = serde_json::from_slice::<MacAddr>(data) {
        let json = serde_json::to_string(&m).expect("serialises");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).ok(), Some(m));
    }
});
