//! `cargo xtask vm-run EXE [ARGS…]`: runs EXE as root inside a throwaway VM that boots Debian's
//! stock kernel, prints what it prints, and exits with its status — the VM tier's harness, for
//! the link kinds and protocols the machine's own kernel may lack (ipvlan, 802.1q, dummy, SCTP,
//! ESP, GRE …: on Debian's kernel they load on demand).
//!
//! It also works as a cargo runner: `cargo xtask test` runs `tests/vm.rs` with
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="<this xtask> vm-run"`.
//!
//! How:
//! - **First use** (kept in the cache, `$BERTH_VM_CACHE` or `~/.cache/berth-vm`): installs
//!   `qemu-system-x86` (from the distribution's backports when the system's qemu tools come
//!   from there, so nothing installed is replaced), downloads the kernel package
//!   `linux-image-amd64` depends on and `busybox-static` with `apt-get download` (unpacked,
//!   never installed), keeps the uncompressed kernel (booted directly: no in-guest
//!   decompression, seconds saved under emulation) and its network, crypto and file-system
//!   modules, indexes them (`depmod`), and builds a small initramfs: busybox, the modules that
//!   reach the host's files (virtio, 9p, overlay) and [`GUEST_INIT`].
//! - **Each run**: a run directory holds the command (the caller's environment, working
//!   directory and argv, quoted) and, afterwards, its exit status. qemu (KVM when the CPU
//!   offers it, else emulation) shares the host's `/` read-only and the run directory
//!   read-write over 9p; the guest stacks a tmpfs over `/` (its writes vanish), runs the
//!   command chrooted there with a fresh `/run`, writes the status, powers off.
//!
//! Environment: `BERTH_VM_CACHE`, `BERTH_VM_MEM` (MiB, default 1024), `BERTH_VM_TIMEOUT`
//! (seconds, default 1800), `BERTH_VM_VERBOSE=1` (the kernel log on stderr afterwards).
//! Exit status: the command's; 124 when the VM timed out; 125 when it stopped without one.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// PID 1 of the guest (busybox sh). Kernel parameters give it `vm_run` (the run directory, a
/// host path) and `vm_modules` (the cached modules, a host path).
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/ttyS1 >/dev/ttyS1 2>&1
stty -opost
for m in virtio_pci 9pnet_virtio 9p overlay; do modprobe $m; done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -r -t 9p -o $opts,cache=loose host /lower
mount -t tmpfs rw /rw
mkdir /rw/upper /rw/work
mount -t overlay root -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /root
mount --bind "/lower$vm_modules" /lib/modules
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm /dev/net
mount -t devpts pts /root/dev/pts
mount -t tmpfs shm /root/dev/shm
mknod /dev/net/tun c 10 200
mount -t tmpfs run /root/run
mkdir -p "/root$vm_run"
mount -t 9p -o $opts run "/root$vm_run"
ip link set lo up
chroot /root /bin/sh "$vm_run/cmd" </dev/null 2>&1 | cat
echo 0 > /proc/sys/kernel/printk
sync
poweroff -f
"#;

/// The modules of the guest kernel kept in the cache (relative to `lib/modules/VERSION/`).
const MODULE_DIRS: &[&str] = &[
    "kernel/arch",
    "kernel/crypto",
    "kernel/lib",
    "kernel/net",
    "kernel/drivers/net",
    "kernel/drivers/virtio",
    "kernel/fs/9p",
    "kernel/fs/netfs",
    "kernel/fs/fscache",
    "kernel/fs/overlayfs",
];

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_VM_CACHE") {
        return d.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/berth-vm")
}

fn sh(script: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{script}` failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Shell-quotes one word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// apt with package lists of its own under the cache: the system's sources plus backports.
struct Apt {
    dir: PathBuf,
    updated: bool,
}

impl Apt {
    fn options(&self) -> String {
        let d = self.dir.display();
        format!(
            "-o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root \
             -o Dir::State::lists={d}/lists -o Dir::Etc::sourcelist={d}/sources.list"
        )
    }

    fn backports() -> Result<String, String> {
        let codename = sh(". /etc/os-release && echo \"$VERSION_CODENAME\"")?;
        Ok(format!("{}-backports", codename.trim()))
    }

    fn update(&mut self) -> Result<(), String> {
        if self.updated {
            return Ok(());
        }
        fs::create_dir_all(self.dir.join("lists/partial")).map_err(|e| e.to_string())?;
        let mut list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
        let _ = writeln!(
            list,
            "deb http://deb.debian.org/debian {} main",
            Self::backports()?
        );
        fs::write(self.dir.join("sources.list"), list).map_err(|e| e.to_string())?;
        sh(&format!("apt-get {} update -qq", self.options()))?;
        self.updated = true;
        Ok(())
    }

    /// Installs `pkg` when missing, from backports when the system's qemu tools come from
    /// there (so apt never replaces what is installed); never removes anything.
    fn install(&mut self, pkg: &str) -> Result<(), String> {
        let status = sh(&format!(
            "dpkg-query -W -f='${{Status}}' {pkg} 2>/dev/null || true"
        ))?;
        if status.contains("ok installed") {
            return Ok(());
        }
        self.update()?;
        let utils = sh("dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true")?;
        let from = if utils.contains("bpo") {
            format!("-t {}", Self::backports()?)
        } else {
            String::new()
        };
        println!("vm: installing {pkg}");
        sh(&format!(
            "DEBIAN_FRONTEND=noninteractive apt-get {} install -y -qq --no-install-recommends \
             --no-remove {from} {pkg} >/dev/null",
            self.options()
        ))
        .map(drop)
    }

    /// Downloads `pkg` and unpacks it under `into` (not installed).
    fn unpack(&mut self, pkg: &str, work: &Path, into: &Path) -> Result<(), String> {
        self.update()?;
        sh(&format!(
            "cd {w} && apt-get {o} download -qq {pkg} && dpkg-deb -x {pkg}_*.deb {i}",
            w = quote(&work.display().to_string()),
            o = self.options(),
            i = quote(&into.display().to_string()),
        ))
        .map(drop)
    }
}

/// The uncompressed kernel inside a bzImage: its payload is one xz stream.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), String> {
    let data = fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    let magic = [0xfd, b'7', b'z', b'X', b'Z', 0];
    let off = data
        .windows(magic.len())
        .position(|w| w == magic)
        .ok_or_else(|| format!("{}: no xz payload", bzimage.display()))?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("xz: {e}"))?;
    // A trailing-garbage error after the stream is expected; the output is whole by then.
    let _ = xz.stdin.take().unwrap().write_all(&data[off..]);
    let _ = xz.wait();
    if fs::metadata(out).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err("could not decompress the kernel".into());
    }
    Ok(())
}

/// Kernel, modules, busybox and initramfs in `dir` (made once; `dir/.done` marks it whole).
fn prepare(dir: &Path, apt: &mut Apt) -> Result<(), String> {
    if dir.join(".done").exists() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(dir);
    let work = dir.with_extension("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    apt.install("xz-utils")?;
    let kernel_pkg = match std::env::var("BERTH_VM_KERNEL_PKG") {
        Ok(p) => p,
        Err(_) => {
            apt.update()?;
            let deps = sh(&format!(
                "apt-cache {} depends linux-image-amd64",
                apt.options()
            ))?;
            deps.lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-") && p.as_bytes()[12].is_ascii_digit())
                .ok_or("no kernel package behind linux-image-amd64")?
                .to_string()
        }
    };
    println!("vm: preparing {kernel_pkg} in {}", dir.display());
    let pkg = work.join("pkg");
    apt.unpack("busybox-static", &work, &pkg)?;
    apt.unpack(&kernel_pkg, &work, &pkg)?;
    fs::copy(pkg.join("bin/busybox"), dir.join("busybox")).map_err(|e| e.to_string())?;
    let vmlinuz = fs::read_dir(pkg.join("boot"))
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .ok_or("no vmlinuz in the kernel package")?
        .path();
    extract_vmlinux(&vmlinuz, &dir.join("vmlinux"))?;
    let kver = fs::read_dir(pkg.join("lib/modules"))
        .map_err(|e| e.to_string())?
        .flatten()
        .next()
        .ok_or("no modules in the kernel package")?
        .file_name()
        .to_string_lossy()
        .into_owned();
    let src = pkg.join("lib/modules").join(&kver);
    let dst = dir.join("lib/modules").join(&kver);
    fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
    let mut wanted = vec![
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ];
    wanted.extend(MODULE_DIRS.iter().copied());
    let wanted: Vec<&str> = wanted
        .into_iter()
        .filter(|w| src.join(w).exists())
        .collect();
    sh(&format!(
        "cd {s} && cp -a --parents {w} {d}",
        s = quote(&src.display().to_string()),
        w = wanted.join(" "),
        d = quote(&dst.display().to_string()),
    ))?;
    sh(&format!(
        "{bb} depmod -b {d} {kver}",
        bb = quote(&dir.join("busybox").display().to_string()),
        d = quote(&dir.display().to_string()),
    ))?;
    make_initramfs(dir, &kver, &work)?;
    let _ = fs::remove_dir_all(&work);
    fs::write(dir.join(".done"), kernel_pkg).map_err(|e| e.to_string())
}

/// busybox, `/init`, and the modules (with what they depend on) that reach the host's files.
fn make_initramfs(dir: &Path, kver: &str, work: &Path) -> Result<(), String> {
    let root = work.join("initramfs");
    let mods = dir.join("lib/modules").join(kver);
    let into = root.join("lib/modules").join(kver);
    for d in ["bin", "sbin", "dev", "proc", "sys", "lower", "rw", "root"] {
        fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    fs::create_dir_all(&into).map_err(|e| e.to_string())?;
    fs::copy(dir.join("busybox"), root.join("bin/busybox")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("/bin/busybox", root.join("sbin/modprobe"))
        .map_err(|e| e.to_string())?;
    fs::write(root.join("init"), GUEST_INIT).map_err(|e| e.to_string())?;
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let dep = fs::read_to_string(mods.join("modules.dep")).map_err(|e| e.to_string())?;
    fs::copy(mods.join("modules.dep"), into.join("modules.dep")).map_err(|e| e.to_string())?;
    let mut needed = Vec::new();
    for m in ["virtio_pci", "9pnet_virtio", "9p", "overlay"] {
        let line = dep
            .lines()
            .find(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|p| p.ends_with(&format!("/{m}.ko")))
            })
            .ok_or_else(|| format!("module {m} not in modules.dep"))?;
        needed.extend(
            line.split([':', ' '])
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    needed.sort();
    needed.dedup();
    for m in needed {
        let to = into.join(&m);
        fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::copy(mods.join(&m), &to).map_err(|e| format!("{m}: {e}"))?;
    }
    sh(&format!(
        "cd {r} && mknod -m 600 dev/console c 5 1 && find . | {bb} cpio -o -H newc > {o} 2>/dev/null",
        r = quote(&root.display().to_string()),
        bb = quote(&dir.join("busybox").display().to_string()),
        o = quote(&dir.join("initramfs.cpio").display().to_string()),
    ))
    .map(drop)
}

/// Runs `argv` in the VM; returns its exit status.
pub fn vm_run(argv: &[String]) -> Result<i32, String> {
    let (exe, args) = argv
        .split_first()
        .ok_or("usage: cargo xtask vm-run EXE [ARGS…]")?;
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let mut apt = Apt {
        dir: cache.join("apt"),
        updated: false,
    };
    let dir = cache.join("qemu");
    {
        let lock = fs::File::create(cache.join("lock")).map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| e.to_string())?;
        prepare(&dir, &mut apt)?;
    }
    apt.install("qemu-system-x86")?;

    let run = cache.join(format!("run.{}", std::process::id()));
    let _ = fs::remove_dir_all(&run);
    fs::create_dir_all(&run).map_err(|e| e.to_string())?;
    let guard = RunDir(run.clone());
    let exe = Path::new(exe);
    let exe = if exe.exists() {
        std::path::absolute(exe).map_err(|e| e.to_string())?
    } else {
        exe.to_path_buf()
    };
    let mut cmd = String::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.is_empty() {
            let _ = writeln!(cmd, "export {k}={}", quote(v));
        }
    }
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let _ = writeln!(
        cmd,
        "cd {} 2>/dev/null || cd /",
        quote(&cwd.display().to_string())
    );
    let _ = write!(cmd, "{}", quote(&exe.display().to_string()));
    for a in args {
        let _ = write!(cmd, " {}", quote(a));
    }
    let _ = writeln!(
        cmd,
        "\necho $? > {}",
        quote(&run.join("rc").display().to_string())
    );
    fs::write(run.join("cmd"), cmd).map_err(|e| e.to_string())?;

    let kvm = fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == "vmx" || w == "svm"))
        && fs::OpenOptions::new().write(true).open("/dev/kvm").is_ok();
    let accel: &[&str] = if kvm {
        &["-accel", "kvm", "-cpu", "host"]
    } else {
        &["-accel", "tcg"]
    };
    let verbose = std::env::var_os("BERTH_VM_VERBOSE").is_some();
    let append = format!(
        "console=ttyS0 {}panic=-1 dummy.numdummies=0 vm_run={} vm_modules={}",
        if verbose { "" } else { "quiet " },
        run.display(),
        dir.join("lib/modules").display()
    );
    let mem = std::env::var("BERTH_VM_MEM").unwrap_or_else(|_| "1024".into());
    let timeout = std::env::var("BERTH_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800u64);
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .args([
            "-m",
            &mem,
            "-smp",
            "1",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-bios", "qboot.rom"])
        .arg("-kernel")
        .arg(dir.join("vmlinux"))
        .arg("-initrd")
        .arg(dir.join("initramfs.cpio"))
        .arg("-serial")
        .arg(format!("file:{}", run.join("kernel.log").display()))
        .args(["-serial", "stdio", "-append", &append])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=run,security_model=none",
            run.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if started.elapsed() > Duration::from_secs(timeout) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = fs::read_to_string(run.join("kernel.log")).unwrap_or_default();
    if verbose {
        eprintln!("{log}");
    }
    if status.is_none() {
        eprintln!("vm: timed out after {timeout} s");
        return Ok(124);
    }
    match fs::read_to_string(run.join("rc"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(rc) => {
            drop(guard);
            Ok(rc)
        }
        None => {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
            eprintln!("vm: the VM stopped without an exit status");
            Ok(125)
        }
    }
}

/// Removes a run directory when dropped.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
