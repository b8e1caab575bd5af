//! Builds the kernel programs (monitor-ebpf, for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker) and leaves the object in OUT_DIR, where src/load embeds it.
//!
//! `AYA_BUILD_SKIP=1` skips the kernel build for fast `cargo check`/clippy; the agent then
//! embeds an empty object and refuses to start with a clear error.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let out = PathBuf::from(env::var("OUT_DIR")?);
    if skip {
        // aya-build writes nothing when skipping; leave an empty object so include_bytes works.
        let obj = out.join("monitor");
        if !obj.exists() {
            fs::write(&obj, [])?;
        }
    }
    let root = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(root).join("..").join("monitor-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
