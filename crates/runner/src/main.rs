//! # mirrorfarm-runner
//!
//! Farm nodes move the git data: they lease jobs from the edge, fetch and push with git, and
//! report back. This first cut carries the node's safety rules as a CLI over the core — masking
//! credentials in text (everything a node logs goes through it) and checking a remote URL against
//! the outbound-address policy — so operators can use them before the daemon lands.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mirrorfarm_core::urls::{GitUrl, HostAllowlist, scrub_text};

/// mirrorfarm farm node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy standard input to standard output with URL credentials masked.
    Scrub,
    /// Check that a remote URL is one a mirror may use; prints it masked.
    CheckUrl {
        /// The URL.
        url: String,
        /// Internal hosts/CIDRs to allow (as MIRRORFARM_ALLOWED_HOSTS).
        #[arg(long, env = "MIRRORFARM_ALLOWED_HOSTS", default_value = "")]
        allow: String,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Scrub => {
            let mut text = String::new();
            io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {e}"))?;
            io::stdout().write_all(scrub_text(&text).as_bytes()).map_err(|e| format!("writing stdout: {e}"))
        }
        Command::CheckUrl { url, allow } => {
            let allow = HostAllowlist::parse(&allow).map_err(|e| e.to_string())?;
            // Error messages describe the URL by its masked form only.
            let parsed = GitUrl::parse(&url).map_err(|e| format!("{}: url {e}", scrub_text(&url)))?;
            parsed.check_outbound(&allow).map_err(|e| format!("{}: url {e}", parsed.masked()))?;
            println!("{}", parsed.masked());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mirrorfarm-runner: {message}");
            ExitCode::FAILURE
        }
    }
}
