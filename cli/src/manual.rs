//! Shell completions and man pages, generated from the clap definitions at run time (no build
//! script: the binary is the one source, so they never disagree with `--help`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "netyard", out);
}

/// Writes netyard.1 and a page for every subcommand (netyard-network-create.1, ...) into
/// `dir`, creating it; returns the netyard pages now in `dir`.
pub fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut pages = pages_in(dir)?;
    pages.sort();
    Ok(pages)
}

fn pages_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("netyard") && name.ends_with(".1") {
            pages.push(path);
        }
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash() -> String {
        let mut out = Vec::new();
        completions(clap_complete::Shell::Bash, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn bash_completion_offers_the_subcommands_and_their_flags() {
        let script = bash();
        assert!(script.contains("complete -F _netyard"), "{script}");
        for word in [
            "network",
            "attach",
            "daemon",
            "completions",
            "--subnet",
            "--netns",
        ] {
            assert!(script.contains(word), "bash completion lacks {word}");
        }
    }

    #[test]
    fn zsh_and_fish_scripts_name_the_subcommands() {
        for shell in [clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8_lossy(&out);
            assert!(script.contains("attach"), "{shell}: {script}");
        }
    }

    #[test]
    fn man_pages_are_roff_for_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("netyard-man-{}", std::process::id()));
        let pages = man_pages(&dir).map_err(|e| e.to_string());
        let page = std::fs::read_to_string(dir.join("netyard.1")).unwrap_or_default();
        let create = dir.join("netyard-network-create.1").is_file();
        let _ = std::fs::remove_dir_all(&dir);
        let pages = pages.unwrap_or_else(|e| panic!("writing man pages: {e}"));
        assert!(pages.len() > 10, "{pages:?}");
        assert!(
            page.starts_with(".ie") || page.contains(".TH netyard"),
            "{page}"
        );
        assert!(page.contains("attach"), "{page}");
        assert!(create, "no page for network create in {pages:?}");
    }

    /// man(1) formats the page: the roff is well formed enough for a reader.
    #[test]
    fn man_renders_the_page() {
        let dir = std::env::temp_dir().join(format!("netyard-man-render-{}", std::process::id()));
        let written = man_pages(&dir).map_err(|e| e.to_string());
        let shown = std::process::Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("netyard-attach.1"))
            .env("MANWIDTH", "100")
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        written.unwrap_or_else(|e| panic!("writing man pages: {e}"));
        let shown = shown.unwrap_or_else(|e| panic!("running man (Debian/Ubuntu: man-db): {e}"));
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success(),
            "man: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        assert!(text.contains("NAME"), "{text}");
        assert!(text.contains("--netns"), "{text}");
    }
}
