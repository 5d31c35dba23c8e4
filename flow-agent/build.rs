//! Compiles the eBPF C programs in `bpf/` with clang into `$OUT_DIR/flow.bpf.o` (ring buffer)
//! and `$OUT_DIR/flow_perf.bpf.o` (perf-buffer fallback).
//!
//! `vmlinux.h` is generated from the running kernel's BTF with bpftool (the kfree_skb program
//! uses CO-RE reads, so the exact layout only matters for field names; aya relocates).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = Path::new("bpf");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WEBB_VMLINUX_BTF");

    let btf =
        std::env::var("WEBB_VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    let vmlinux_h = out.join("vmlinux.h");
    let dump = Command::new("bpftool")
        .args(["btf", "dump", "file", &btf, "format", "c"])
        .output()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `bpftool` ({e}); install it: apt-get install -y --no-install-recommends bpftool"
            ))
        });
    if !dump.status.success() {
        fail(&format!(
            "`bpftool btf dump file {btf}` failed: {} (the kernel needs CONFIG_DEBUG_INFO_BTF, or set WEBB_VMLINUX_BTF)",
            String::from_utf8_lossy(&dump.stderr).trim()
        ));
    }
    std::fs::write(&vmlinux_h, &dump.stdout).expect("write vmlinux.h into OUT_DIR");

    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(
            "libbpf headers missing (/usr/include/bpf/bpf_helpers.h); install them: apt-get install -y --no-install-recommends libbpf-dev",
        );
    }

    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => fail(&format!(
            "unsupported target arch {other} for the eBPF programs"
        )),
        Err(_) => "x86",
    };
    // The ring-buffer object, and the perf-buffer fallback for kernels without ring buffers.
    compile(&out, bpf_dir, arch, "flow.bpf.o", &[]);
    compile(&out, bpf_dir, arch, "flow_perf.bpf.o", &["-DWEBB_PERF"]);
}

fn compile(out: &Path, bpf_dir: &Path, arch: &str, name: &str, defines: &[&str]) {
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .args(defines)
        .arg("-I")
        .arg(out)
        .arg("-I")
        .arg(bpf_dir)
        .arg("-c")
        .arg(bpf_dir.join("flow.bpf.c"))
        .arg("-o")
        .arg(out.join(name))
        .status()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `clang` ({e}); install it: apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool"
            ))
        });
    if !status.success() {
        fail(&format!(
            "clang failed to compile bpf/flow.bpf.c into {name} (see the diagnostics above)"
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}
