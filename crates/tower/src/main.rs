//! `towerctl`: the Control Tower's command line tool (see the `site-tower` crate).

fn main() -> std::process::ExitCode {
    site_tower::main()
}
