//! `afs-wasm`: an AFS client for the command line, and a runner of wasm guests that
//! map AFS files.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::init_tracing(args.verbose);
    // A guest runs on this thread, outside any tokio runtime: the host it runs in has
    // its own runtime for AFS, which the guest can never block.
    if matches!(args.command, cli::Command::Run(_) | cli::Command::Serve(_)) {
        return match cli::run_guest(args) {
            // As a shell reports it: the low 8 bits.
            Ok(code) => ExitCode::from((code & 0xff) as u8),
            Err(e) => fail(e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("afs-wasm: {e:#}");
    ExitCode::FAILURE
}
