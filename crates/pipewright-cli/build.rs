//! Links the Windows `pipewright.exe` with its sections page-aligned in the file.
//!
//! mingw's linker aligns sections to 512 bytes in the file. Wine cannot map such an image: it
//! reads every section into private memory, debug info included, so an idle
//! `pipewright.exe relay` held some 45 MiB of its own image (docs/bench.md, "Idle relay and
//! bridge"). With 4 KiB alignment Wine maps the file, as Windows does, and untouched pages
//! (debug info above all) cost nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,--file-alignment=0x1000");
    }
}
