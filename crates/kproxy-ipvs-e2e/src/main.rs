//! `ipvs-agent-e2e [functional|scale|all] --kproxy PATH [--services N]`: the agent in
//! ipvs mode end to end, inside the ipvs-vm guest (`tools/ipvs-vm/test-agent` builds and
//! runs it). Prints each check and ends with `ipvs-agent: N passed, M failed`; exits 1 on
//! any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use kproxy_ipvs_e2e::checks::Checks;
use kproxy_ipvs_e2e::{functional, scale};

const USAGE: &str = "usage: ipvs-agent-e2e [functional|scale|all] --kproxy PATH [--services N]";

/// What to run, with which binary, and how many Services the scale run has.
struct Options {
    what: String,
    kproxy: PathBuf,
    services: u32,
}

fn options(args: &[String]) -> Option<Options> {
    let (what, kproxy, services) = match args {
        [what, flag, path] if flag == "--kproxy" => (what, path, scale::SERVICES),
        [what, flag, path, count, n] if flag == "--kproxy" && count == "--services" => {
            (what, path, n.parse().ok()?)
        }
        _ => return None,
    };
    Some(Options {
        what: what.clone(),
        kproxy: PathBuf::from(kproxy),
        services,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(options) = options(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if std::env::var_os("IPVS_VM").is_none() {
        eprintln!("ipvs-agent-e2e: runs inside the ipvs-vm guest only (tools/ipvs-vm/test-agent)");
        return ExitCode::from(2);
    }
    let dir = match functional::work_dir("ipvs-agent-e2e") {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut checks = Checks::default();
    let (kproxy, services) = (&options.kproxy, options.services);
    match options.what.as_str() {
        "functional" => functional::run(kproxy, &dir, &mut checks),
        "scale" => scale::run(kproxy, &dir, services, &mut checks),
        "all" => {
            functional::run(kproxy, &dir, &mut checks);
            scale::run(kproxy, &dir, services, &mut checks);
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    println!("{}", checks.summary());
    if checks.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
