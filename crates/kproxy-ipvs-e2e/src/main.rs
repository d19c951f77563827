//! `ipvs-agent-e2e [functional|scale|all] --kproxy PATH`: the agent in ipvs mode end to
//! end, inside the ipvs-vm guest (`tools/ipvs-vm/test-agent` builds and runs it). Prints
//! each check and ends with `ipvs-agent: N passed, M failed`; exits 1 on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use kproxy_ipvs_e2e::checks::Checks;
use kproxy_ipvs_e2e::{functional, scale};

const USAGE: &str = "usage: ipvs-agent-e2e [functional|scale|all] --kproxy PATH";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, kproxy) = match args.as_slice() {
        [what, flag, path] if flag == "--kproxy" => (what.as_str(), PathBuf::from(path)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("IPVS_VM").is_none() {
        eprintln!("ipvs-agent-e2e: runs inside the ipvs-vm guest only (tools/ipvs-vm/test-agent)");
        return ExitCode::from(2);
    }
    let mut checks = Checks::default();
    let dir = match functional::work_dir("ipvs-agent-e2e") {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match what {
        "functional" => functional::run(&kproxy, &dir, &mut checks),
        "scale" => scale::run(&kproxy, &dir, &mut checks),
        "all" => {
            functional::run(&kproxy, &dir, &mut checks);
            scale::run(&kproxy, &dir, &mut checks);
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
