//! Any bytes as a legacy smtp-proxy.xml (ISO-8859-1 or UTF-8): converted
//! or refused with a reason, never a panic; what converts is a
//! configuration postern can write as TOML and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::config::{legacy, Config};

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = legacy::parse(data) {
        let _ = config.validate();
        let again = Config::parse(&config.to_toml()).expect("a converted file reads back");
        assert_eq!(again, config);
    }
});
