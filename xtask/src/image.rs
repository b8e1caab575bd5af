//! `cargo xtask image`: the agent's container image, built offline with buildah from scratch.
//!
//! The image holds the release binary (kernel programs embedded), exactly the shared libraries
//! `ldd` says it loads, the CA bundle (for HTTPS webhooks) and the default configuration, and
//! nothing else: no shell, no package manager. The result is checked by running the binary inside
//! it (`monitor --version`, `monitor config check`) and written as an OCI archive to
//! `target/image/monitor-<version>.oci.tar` (and to buildah's local storage as
//! `localhost/monitor:<version>`). The `Containerfile` builds the same image where a registry
//! is reachable.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

const STORAGE: &str = "--storage-driver=vfs";

fn buildah(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("buildah")
        .arg(STORAGE)
        .args(args)
        .output()
        .with_context(|| format!("running buildah {args:?} (apt package buildah)"))?;
    if !out.status.success() {
        bail!(
            "buildah {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The absolute paths of the shared libraries (and the loader) a binary needs.
fn libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path
            && p.starts_with('/')
        {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("ldd found no libraries for {}: {text}", binary.display());
    }
    Ok(libs)
}

fn copy_into(root: &Path, src: &Path, dst: &Path) -> anyhow::Result<()> {
    let target = root.join(dst.strip_prefix("/").unwrap_or(dst));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Follow symlinks: the image gets the real file under the name the loader asks for.
    std::fs::copy(src, &target)
        .with_context(|| format!("copying {} into the image", src.display()))?;
    Ok(())
}

pub(crate) fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let binary = root.join("target/release/monitor");
    if !binary.exists() {
        bail!("{} missing: build it first", binary.display());
    }
    let ctr = buildah(&["from", "scratch"])?;
    let result = (|| -> anyhow::Result<PathBuf> {
        let mnt = PathBuf::from(buildah(&["mount", &ctr])?);
        copy_into(&mnt, &binary, Path::new("/usr/local/bin/monitor"))?;
        for lib in libraries(&binary)? {
            copy_into(&mnt, &lib, &lib)?;
        }
        for ca in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/share/zoneinfo/UTC",
        ] {
            if Path::new(ca).exists() {
                copy_into(&mnt, Path::new(ca), Path::new(ca))?;
            }
        }
        copy_into(
            &mnt,
            &root.join("deploy/base/config.yaml"),
            Path::new("/etc/monitor/config.yaml"),
        )?;
        copy_into(
            &mnt,
            &root.join("monitor/rules/default.yaml"),
            Path::new("/etc/monitor/rules/default.yaml"),
        )?;
        for dir in ["tmp", "var/lib/monitor", "var/log/monitor", "proc", "sys"] {
            std::fs::create_dir_all(mnt.join(dir))?;
        }
        buildah(&["umount", &ctr])?;
        buildah(&[
            "config",
            "--entrypoint",
            r#"["/usr/local/bin/monitor"]"#,
            "--cmd",
            "run --config /etc/monitor/config.yaml",
            "--port",
            "9750",
            "--env",
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            "--label",
            "org.opencontainers.image.title=monitor",
            "--label",
            &format!("org.opencontainers.image.version={version}"),
            &ctr,
        ])?;
        // The image works: its binary runs with only the libraries copied in.
        let in_image = |args: &[&str]| {
            let mut all = vec!["run", "--isolation", "chroot", ctr.as_str(), "--"];
            all.extend_from_slice(args);
            buildah(&all)
        };
        let v = in_image(&["/usr/local/bin/monitor", "--version"])?;
        if !v.contains(version) {
            bail!("monitor --version in the image printed `{v}`");
        }
        in_image(&[
            "/usr/local/bin/monitor",
            "config",
            "check",
            "--rules",
            "--config",
            "/etc/monitor/config.yaml",
        ])?;
        let out_dir = root.join("target/image");
        std::fs::create_dir_all(&out_dir)?;
        let archive = out_dir.join(format!("monitor-{version}.oci.tar"));
        let _ = std::fs::remove_file(&archive);
        buildah(&[
            "commit",
            "--rm",
            &ctr,
            &format!("oci-archive:{}", archive.display()),
        ])?;
        Ok(archive)
    })();
    if result.is_err() {
        let _ = buildah(&["rm", &ctr]);
    }
    let archive = result?;
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "image: {} ({:.1} MiB); load it with `skopeo copy oci-archive:{} docker://REGISTRY/monitor:{version}` or `podman load -i`",
        archive.display(),
        size as f64 / (1 << 20) as f64,
        archive.display()
    );
    Ok(archive)
}
