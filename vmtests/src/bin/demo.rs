//! `cargo run --release -p vmtests --bin demo`: an inline ext4 file
//! memory-mapped through DAX in a real QEMU 11 guest (see `vmtests::demo`).
//! Exit code 0 only when everything it shows happened; 1 when it failed;
//! 2 when a prerequisite is missing (the reason is printed).

fn main() {
    let bin = match vmtests::demo::daemon_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
    };
    match vmtests::demo::run(&bin, &mut std::io::stdout()) {
        Ok(outcome) if outcome.ok() => {}
        Ok(outcome) => {
            eprintln!("demo: failed: {outcome:?}");
            std::process::exit(1);
        }
        Err(why) => {
            eprintln!("demo: cannot run: {why}");
            std::process::exit(2);
        }
    }
}
