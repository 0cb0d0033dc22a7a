//! `berth-oci`: berth's embedded OCI runtime (`berth oci`) as a small binary
//! of its own. The runtime is exec'd for every create, start, state, kill
//! and delete, and libcontainer forks twice more from it: loading, relocating
//! and copying the page tables of the full `berth` binary (the CLI, the CRI
//! server, the image store) each time costs more than the work itself.
//! `RuntimeOptions` picks this binary when it sits next to `berth`.

#[path = "oci/mod.rs"]
mod oci;

fn main() -> std::process::ExitCode {
    oci::main_from(std::env::args_os().collect())
}
