//! The build script of every function (and of the cold-start bench's hello-world, built the
//! same way): link the Lambda binary as a position-dependent executable on Linux.
//!
//! A position-independent executable carries a relocation for every pointer in its read-only
//! data (vtables, string tables, the SDK's static tables), which the loader applies at every
//! start: about half a MiB of `.rela.dyn` per function, read and written on each cold start.
//! Linked at a fixed address, the binary carries none of it (docs/benchmarks.md, "Release
//! profile", has the measurement). The code is still compiled position-independent, so the
//! crates that also build shared libraries (crc-fast, under the S3 SDK) link as before; the
//! one thing given up is address randomisation of the executable's own image (the stack, the
//! heap and the shared libraries stay randomised).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
