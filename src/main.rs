//! The `parley` binary: everything lives in the library, see [`parley::cli`].

fn main() -> std::process::ExitCode {
    parley::cli::run()
}
