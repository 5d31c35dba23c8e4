fn main() -> std::process::ExitCode {
    tui::cli::main()
}
