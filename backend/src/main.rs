//! `ext4-virtiofsd`: serves ext4 image files to VMs over vhost-user
//! virtio-fs, and offers offline image tools (`image ...`) that read and
//! change images without mounting them.

mod cli;
mod image_tool;

use ext4_virtiofsd::host;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let mut log = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    let result = match cli.command {
        cli::Command::Serve(args) => match args.resolve() {
            Ok(settings) => {
                if let Some(level) = &settings.log_level {
                    log.parse_filters(level);
                }
                log.init();
                ext4_virtiofsd::vhost::run(&settings).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        },
        command => {
            log.init();
            run_other(command)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ext4-virtiofsd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_other(command: cli::Command) -> Result<(), String> {
    match command {
        cli::Command::Serve(_) => unreachable!("handled by main"),
        cli::Command::Image(cmd) => image_tool::run(cmd).map_err(|e| e.to_string()),
        cli::Command::Mount {
            image,
            mountpoint,
            read_only,
            cache,
            threads,
            writeback,
            max_lock_waiters,
            no_subtype,
            atime,
            dev,
            suid,
        } => host::run(
            &image,
            &mountpoint,
            &host::MountOptions {
                read_only,
                cache,
                threads,
                writeback,
                max_lock_waiters,
                subtype: !no_subtype,
                atime,
                dev,
                suid,
            },
        )
        .map_err(|e| e.to_string()),
    }
}
