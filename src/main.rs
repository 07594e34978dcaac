fn main() {
    std::process::exit(delta_sessions::cli::main());
}
