//! Running one program inside a sandbox "host" netns, timed, with its peak RSS.
//!
//! Every process-per-operation side (netctl, netavark, the CNI plugins, and `nft` for read-backs)
//! starts the same way, so the fixed cost of starting a process hits them all alike: after `fork`
//! the child enters the sandbox netns (`setns` on the fd the harness holds), gets a private mount
//! namespace with a fresh `/sys` for that netns — what `ip netns exec` does, without exec'ing
//! `ip` first (~4 ms here) — and then execs the program. Nothing runs in the machine's own netns.
//!
//! The peak RSS comes from `wait4`'s rusage (it covers the process and the children it reaped,
//! e.g. `host-local` under the CNI `bridge` plugin).

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
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
    /// Peak resident set size, KiB (`ru_maxrss`).
    pub maxrss_kib: u64,
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
    cmd: Command,
    stdin: Vec<u8>,
}

impl<'a> Proc<'a> {
    /// `program` to be run inside `netns`.
    pub fn new(netns: &'a Netns, program: impl AsRef<std::ffi::OsStr>) -> Self {
        Proc {
            netns,
            cmd: Command::new(program),
            stdin: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Bytes written to its standard input (then closed).
    pub fn stdin(mut self, input: Vec<u8>) -> Self {
        self.stdin = input;
        self
    }

    /// Runs it to completion.
    pub fn run(mut self) -> io::Result<Ran> {
        let fd: RawFd = self.netns.as_raw_fd();
        let root = CString::new("/").unwrap();
        let sys = CString::new("/sys").unwrap();
        let sysfs = CString::new("sysfs").unwrap();
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes raw
        // syscalls on data prepared before the fork (no allocation, no locks).
        unsafe {
            self.cmd.pre_exec(move || {
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
        let mut child = self.cmd.spawn()?;
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
        let mut status = 0;
        // SAFETY: rusage is plain data, filled by the kernel.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            // SAFETY: waits for our own child, whose pid std has not reaped (we never call
            // `Child::wait`).
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break r;
        };
        let elapsed = start.elapsed();
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        Ok(Ran {
            code,
            stdout,
            stderr,
            elapsed,
            maxrss_kib: ru.ru_maxrss.max(0) as u64,
        })
    }
}
