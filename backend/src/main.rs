//! `ext4-virtiofsd`: serves ext4 image files to VMs over vhost-user
//! virtio-fs, and offers offline image tools (`image ...`) that read and
//! change images without mounting them.

mod cli;
mod image_tool;

use ext4_virtiofsd::host;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Image(cmd) => image_tool::run(cmd).map_err(|e| e.to_string()),
        cli::Command::Mount { image, mountpoint, read_only, cache, threads, writeback, max_lock_waiters } => {
            host::run(&image, &mountpoint, &host::MountOptions { read_only, cache, threads, writeback, max_lock_waiters })
                .map_err(|e| e.to_string())
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
