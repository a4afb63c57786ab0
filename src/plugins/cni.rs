//! Placeholder: being built (see src/plugins/mod.rs).

/// Runs the front/plugin with the arguments after the name it was invoked by; returns the
/// process exit status.
pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
    eprintln!("netyard: cni is not built yet");
    1
}
