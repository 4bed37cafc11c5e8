//! `cjwt`: keys, minting, inspecting and explaining decisions — on the same core
//! the Envoy filter runs, so what it says is what the filter does.
//!
//! Exit codes: 0 success / allowed; 1 error (bad arguments, files, configuration);
//! 3 refused with 401; 4 refused with 403.

/// `println!` that ends the process quietly (exit 141, as a shell reports
/// SIGPIPE) when standard output is gone, as in `cjwt explain … | head -1`,
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

mod commands;
mod values;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Constraint JWTs: keys, minting, inspecting and explaining decisions, checking configurations.
#[derive(Parser, Debug)]
#[command(name = "cjwt", version, arg_required_else_help = true, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success or allowed; 1 error (arguments, files, configuration); 3 refused with 401; 4 refused with 403.";

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a signing key: a private PKCS#8 PEM (mode 0600) and its public JWKS.
    Keygen(commands::keygen::Args),
    /// Mint a signed token with standard claims and constraints; prints the token.
    Mint(Box<commands::mint::Args>),
    /// Derive a narrower link onto a DPoP-bound token or chain, offline (SPEC §16); prints `ROOT~LINK~…`.
    Attenuate(Box<commands::attenuate::Args>),
    /// Show a token's header and claims, not verified, with the dates in UTC.
    Inspect(commands::inspect::Args),
    /// Make a DPoP proof (RFC 9449) for a method, URL and token; prints the proof.
    Dpop(commands::dpop::Args),
    /// Decide one request against a plugin configuration exactly as the filter would.
    Explain(Box<commands::explain::Args>),
    /// Compile a plugin configuration (JSON or protobuf Struct) and report what it holds.
    CheckConfig(commands::check_config::Args),
    /// Build and sign a Status List Token from revoked and suspended indexes.
    StatusList(commands::status_list::Args),
    /// Mint a Transaction Token (txntoken+jwt) as a gateway issues them; prints the token.
    TxnToken(Box<commands::txn_token::Args>),
}

impl Command {
    /// Runs the command; `Ok` carries the exit code.
    fn run(self) -> Result<u8, String> {
        match self {
            Command::Keygen(a) => commands::keygen::run(a),
            Command::Mint(a) => commands::mint::run(*a),
            Command::Attenuate(a) => commands::attenuate::run(*a),
            Command::Inspect(a) => commands::inspect::run(a),
            Command::Dpop(a) => commands::dpop::run(a),
            Command::Explain(a) => commands::explain::run(*a),
            Command::CheckConfig(a) => commands::check_config::run(a),
            Command::StatusList(a) => commands::status_list::run(a),
            Command::TxnToken(a) => commands::txn_token::run(*a),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    match cli.command.run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cjwt: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints `--help`/`--version` (exit 0), or an argument error in cjwt's style
/// (`cjwt: what went wrong`, then clap's usage and tips; exit 1).
fn argument_error(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        // Nothing useful is left to do if stdout is gone.
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let mut lines = rendered.lines();
    let first = match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(arg))) => {
            lines.next();
            format!("unknown option {arg}")
        }
        (ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand, _) => "missing subcommand".to_string(),
        _ => lines.next().map(|l| l.trim_start_matches("error: ").to_string()).unwrap_or_default(),
    };
    eprintln!("cjwt: {first}");
    for line in lines {
        match line.strip_prefix("Usage: ") {
            Some(usage) => eprintln!("usage: {usage}"),
            None => eprintln!("{line}"),
        }
    }
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_argument_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
