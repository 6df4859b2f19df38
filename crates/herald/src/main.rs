//! The `herald` binary: a thin shell over the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = herald::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(herald::cli::run(cli));
    // Streams and background tasks are already closed; don't wait on them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
