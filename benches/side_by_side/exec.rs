//! Running one program inside a sandbox "host" netns, timed, with its peak RSS.
//!
//! Every process-per-operation side (netctl, netavark, the CNI plugins, and `nft` for read-backs)
//! starts the same way, so the fixed cost of starting a process hits them all alike: after `fork`
//! the child enters the sandbox netns (`setns` on the fd the harness holds), gets a private mount
//! namespace with a fresh `/sys` for that netns — what `ip netns exec` does, without exec'ing
//! `ip` first (~4 ms here) — and then execs the program. Nothing runs in the machine's own netns.
//!
//! Peak RSS: `wait4`'s `ru_maxrss` of a child forked from the harness is useless — at `exec` the
//! kernel keeps the high-water mark of the forked copy of the harness's memory. So, inside
//! [`measure_rss`], programs are started through a launcher instead: the harness binary re-exec'd
//! fresh (`--bench --launch PROGRAM ARGS…`, a few MiB), which forks and execs the program, reaps it
//! with `wait4` and reports its `ru_maxrss` (the program and the children it reaped, e.g.
//! `host-local` under the CNI `bridge` plugin) on its last stderr line. The launcher costs a
//! process start, so timed operations never use it.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::Netns;

/// What one process did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// From just before `fork` to `wait4` returning.
    pub elapsed: Duration,
    /// Peak resident set size, KiB, when run inside [`measure_rss`].
    pub maxrss_kib: Option<u64>,
}

static VIA_LAUNCHER: AtomicBool = AtomicBool::new(false);
const LAUNCH_TAG: &str = "side_by_side-launcher maxrss_kib=";

/// Runs `f` with every [`Proc`] started through the launcher, so their peak RSS is measured.
/// Not for concurrent use (one global switch).
pub fn measure_rss<T>(f: impl FnOnce() -> T) -> T {
    VIA_LAUNCHER.store(true, Ordering::SeqCst);
    let r = f();
    VIA_LAUNCHER.store(false, Ordering::SeqCst);
    r
}

/// The launcher (`side_by_side --bench --launch PROGRAM ARGS…`): runs the program with this
/// process's stdin/stdout/stderr, then prints its peak RSS on stderr and exits with its code.
pub fn launcher(program: &OsStr, args: &[OsString]) -> ExitCode {
    let child = match Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("launcher: {}: {e}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let (code, rss) = match reap(child.id() as libc::pid_t) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("launcher: wait4: {e}");
            return ExitCode::from(127);
        }
    };
    eprintln!("\n{LAUNCH_TAG}{rss}");
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// `wait4` for `pid`: its exit code (`-1` when killed) and `ru_maxrss` (KiB).
fn reap(pid: libc::pid_t) -> io::Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, which std has not reaped (`Child::wait` is never
        // called on it).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, ru.ru_maxrss.max(0) as u64))
}

impl Ran {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// `Ok(self)` on exit 0, else an error naming `what` with the first lines of stderr.
    pub fn check(self, what: &str) -> Result<Ran, String> {
        if self.ok() {
            return Ok(self);
        }
        let err = String::from_utf8_lossy(&self.stderr);
        let out = String::from_utf8_lossy(&self.stdout);
        let msg: String = err
            .lines()
            .chain(out.lines())
            .take(4)
            .collect::<Vec<_>>()
            .join(" | ");
        Err(format!("{what}: exit {}: {msg}", self.code))
    }
}

/// A program to run in a netns.
pub struct Proc<'a> {
    netns: &'a Netns,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    stdin: Vec<u8>,
}

impl<'a> Proc<'a> {
    /// `program` to be run inside `netns`.
    pub fn new(netns: &'a Netns, program: impl AsRef<OsStr>) -> Self {
        Proc {
            netns,
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.env.push((k.to_string(), v.as_ref().to_owned()));
        self
    }

    /// Bytes written to its standard input (then closed).
    pub fn stdin(mut self, input: Vec<u8>) -> Self {
        self.stdin = input;
        self
    }

    /// Runs it to completion.
    pub fn run(mut self) -> io::Result<Ran> {
        let launched = VIA_LAUNCHER.load(Ordering::SeqCst);
        let mut cmd = if launched {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["--bench", "--launch"]).arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let fd: RawFd = self.netns.as_raw_fd();
        let root = CString::new("/").unwrap();
        let sys = CString::new("/sys").unwrap();
        let sysfs = CString::new("sysfs").unwrap();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes raw
        // syscalls on data prepared before the fork (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Mount events stay in this child's namespace.
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // A /sys that shows the sandbox netns' links, as `ip netns exec` gives.
                libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
                if libc::mount(
                    sysfs.as_ptr(),
                    sys.as_ptr(),
                    sysfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let pid = child.id() as libc::pid_t;
        let mut stdin = child.stdin.take().expect("piped");
        let input = std::mem::take(&mut self.stdin);
        let mut err = child.stderr.take().expect("piped");
        let mut out = child.stdout.take().expect("piped");
        // stdin, stdout and stderr are served at once: `nft -j` prints megabytes, and a program
        // may write before it has read all its input.
        let (stdout, stderr) = std::thread::scope(|s| {
            s.spawn(move || {
                let _ = stdin.write_all(&input);
            });
            let e = s.spawn(move || {
                let mut v = Vec::new();
                let _ = err.read_to_end(&mut v);
                v
            });
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            (v, e.join().unwrap_or_default())
        });
        let (code, _) = reap(pid)?;
        let elapsed = start.elapsed();
        let mut stderr = stderr;
        let mut maxrss_kib = None;
        if launched {
            let text = String::from_utf8_lossy(&stderr).into_owned();
            if let Some(at) = text.rfind(LAUNCH_TAG) {
                maxrss_kib = text[at + LAUNCH_TAG.len()..].trim().parse().ok();
                stderr = text[..at].trim_end_matches('\n').as_bytes().to_vec();
            }
        }
        Ok(Ran {
            code,
            stdout,
            stderr,
            elapsed,
            maxrss_kib,
        })
    }
}
