//! Runs `kproxy demo` from this crate: `cargo run -p kproxy-lab --example demo` (as root;
//! set KPROXY_BIN to a kproxy binary that runs the node agent).

fn main() -> std::process::ExitCode {
    match kproxy_lab::run_demo(&mut std::io::stdout()) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
