//! The configuration file, as `herald serve --config FILE` reads it:
//! `herald::Config::load` (defaults, then the TOML file, then `HERALD_*`
//! variables) followed by its `check()`.
//!
//! Each input is written to a scratch file and loaded through the same
//! function the CLI calls. A configuration that loads must pass `check()`
//! again, and, written back out as TOML, must load to the same settings.
#![no_main]

use herald::config::FlagOverrides;
use herald::Config;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("herald-fuzz-{}-{name}.toml", std::process::id()))
}

fn load(path: &PathBuf, text: &[u8]) -> Result<Config, herald::config::ConfigError> {
    std::fs::write(path, text).expect("write the scratch config");
    Config::load(Some(path), &FlagOverrides::default())
}

fuzz_target!(|data: &[u8]| {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (input, again) = PATHS.get_or_init(|| (scratch("input"), scratch("again")));
    let Ok(config) = load(input, data) else { return };
    config.check().expect("a loaded configuration passes its check");
    // TOML integers are signed: a value no TOML file could hold is not a
    // round-trip failure.
    let Ok(written) = toml::to_string(&config) else { return };
    let reloaded = load(again, written.as_bytes()).unwrap_or_else(|e| panic!("{written}\ndoes not load back: {e}"));
    assert_eq!(
        serde_json::to_value(&reloaded).expect("serialize"),
        serde_json::to_value(&config).expect("serialize"),
        "{written}"
    );
});
