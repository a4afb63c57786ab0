//! The README's first command: `netyard demo` builds a network with two namespaces that find
//! each other by name and ping, then removes everything.

mod common;

use std::process::Command;

#[test]
fn demo_pings_by_name_and_cleans_up() {
    common::require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_netyard"))
        .arg("demo")
        .env("NO_COLOR", "1")
        .output()
        .expect("run netyard demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("found each other by name"), "{stdout}");
    assert!(stdout.contains("3 received"), "{stdout}");
}
