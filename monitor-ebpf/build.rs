//! Rebuild the kernel object when bpf-linker changes: the dependency is not visible to cargo.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
