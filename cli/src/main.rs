//! The `strata` command.

fn main() {
    eprintln!("strata: not built yet");
    std::process::exit(1);
}
