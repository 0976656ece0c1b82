//! The `metasink` binary: the command line; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    metasink::cli::main(metasink::cli::Cli::parse())
}
