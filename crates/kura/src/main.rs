//! The `kura` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    kura::run()
}
