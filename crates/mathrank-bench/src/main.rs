//! `mathrank-bench`: measurements and generators for scale work, kept out of the `mathrank`
//! binary. `mathrank-bench --help` lists them; each prints what it measured and the command
//! that reproduces it.

mod bench;
mod flood;
mod gen_dump;
mod load;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "mathrank-bench", version, about = "mathrank's benchmarks, load generators and synthetic dumps")]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `mathrank_rerank=debug`).
    #[arg(long, global = true, env = "MATHRANK_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    command: bench::BenchCommand,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match bench::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
