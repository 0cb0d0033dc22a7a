//! Stand-in for `berth monitor DIR` until the binary wires the subcommand;
//! the monitor tests run it. Usage: `monitor monitor DIR`.

fn main() {
    let Some(dir) = std::env::args_os().nth(2) else {
        eprintln!("usage: monitor monitor DIR");
        std::process::exit(2);
    };
    std::process::exit(berth_runtime::monitor::run(std::path::Path::new(&dir)));
}
