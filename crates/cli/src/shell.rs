//! `convnet completions SHELL` and `convnet man`: shell completion scripts and manual pages
//! generated from the same clap definitions as `--help` (`clap_complete`, `clap_mangen`), so
//! the three never disagree.

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;
use std::io::Write;
use std::path::PathBuf;

/// Options of `convnet completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Options of `convnet man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Folder to write convnet.1 and one page per command (convnet-mnist-train.1, ...) to,
    /// instead of printing convnet(1).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The completion script of `shell` for `cmd`.
pub fn completion_script(shell: Shell, cmd: &mut clap::Command) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, cmd, "convnet", &mut script);
    script
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(cmd: &mut clap::Command, args: &CompletionsArgs) -> Result<()> {
    let script = completion_script(args.shell, cmd);
    std::io::stdout().write_all(&script).context("writing the completion script")
}

/// `cmd` ready for the manual: built, so that each subcommand's page is named after its path
/// (`convnet-mnist-train`), without the `help` subcommand.
pub fn for_manual(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Every manual page of `cmd` (from [`for_manual`]) and its visible subcommands, as
/// `(file name, roff)`, subcommands first.
pub fn pages(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let name = man.get_filename();
    let mut roff = Vec::new();
    man.render(&mut roff).with_context(|| format!("rendering {name}"))?;
    out.push((name, roff));
    Ok(())
}

/// Prints convnet(1), or writes every page to `args.out`.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<()> {
    let cmd = for_manual(cmd);
    let Some(dir) = &args.out else {
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut roff).context("rendering convnet(1)")?;
        return std::io::stdout().write_all(&roff).context("writing the manual page");
    };
    let mut all = Vec::new();
    pages(&cmd, &mut all)?;
    convnet::nn::fsio::ensure_writable_dir(dir).with_context(|| format!("cannot write to --out {}", dir.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, roff) in &all {
        let path = dir.join(name);
        convnet::nn::fsio::write_file_atomic(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {} manual pages to {}", all.len(), dir.display());
    Ok(())
}
