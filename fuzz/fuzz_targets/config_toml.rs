//! Any configuration text: it parses or says where it does not, and a
//! configuration that parses is validated as a whole (every check, the
//! alias table's expansion included) without a panic, and written back as
//! TOML that parses to the same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::alias::Aliases;
use postern_shared::config::Config;
use postern_shared::domains::DomainIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let _ = config.validate();
    let _ = config.warnings();
    let (aliases, _) = Aliases::build(&config.aliases);
    let _ = aliases.check(&config.servers, &DomainIndex::new(&config.servers), 1000);
    let again = Config::parse(&config.to_toml()).expect("what postern writes, it reads");
    assert_eq!(again, config);
});
