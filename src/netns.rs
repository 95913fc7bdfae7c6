//! Network namespace handles.
//!
//! A [`Netns`] owns an open file descriptor of a namespace (cheap to clone: the fd is shared). Work
//! that must happen *inside* a namespace (opening a netlink or nf_tables socket, writing a sysctl,
//! binding a test socket) runs on a short-lived dedicated thread that `setns`es and then exits:
//! never on the caller's thread or a tokio worker, whose namespace must not change.
//! A socket stays bound to the namespace it was created in, so it can be used from anywhere after.
//!
//! Short work (opening a socket, writing a sysctl) goes through [`Netns::enter`] instead: one
//! shared helper thread enters the namespace for the call and returns to its own afterwards, so
//! no thread is started per call (~0.1 ms each here, more when the CPUs are busy) and no
//! namespace is kept alive by it between calls.
//!
//! Named namespaces are iproute2-compatible (`/run/netns/NAME`, usable with `ip netns exec`) and
//! are made without forking: an unshared thread's `/proc/thread-self/ns/net` is bind-mounted.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{Error, Result};

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    fd: Arc<OwnedFd>,
    path: Option<PathBuf>,
}

fn netns_err(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Netns { op, path, source }
}

/// `NS_GET_NSTYPE` (`_IO(0xb7, 0x3)`, linux/nsfs.h): the `CLONE_NEW*` type of a namespace fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// What kind of namespace `fd` is: `Ok(())` for a network namespace, else an error saying what
/// it is instead (a regular file, a directory, a device, another kind of namespace).
fn ensure_net_namespace(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd's inode; any fd is valid
    // input (non-namespace files answer ENOTTY).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r < 0 {
        let e = io::Error::last_os_error();
        let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
        let what = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => "a directory",
            libc::S_IFREG => "a regular file",
            libc::S_IFCHR | libc::S_IFBLK => "a device",
            libc::S_IFIFO => "a pipe",
            libc::S_IFSOCK => "a socket",
            _ => return Err(e),
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {what}, not a network namespace"),
        ));
    }
    if r == libc::CLONE_NEWNET {
        return Ok(());
    }
    let kind = match r {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWCGROUP => "cgroup",
        _ => "another kind of",
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is a {kind} namespace, not a network namespace"),
    ))
}

impl Netns {
    /// The namespace of the calling thread (`/proc/thread-self/ns/net`).
    pub fn current() -> Result<Self> {
        let fd = File::open("/proc/thread-self/ns/net")
            .map_err(netns_err("open", "/proc/thread-self/ns/net"))?;
        Ok(Netns {
            fd: Arc::new(fd.into()),
            path: None,
        })
    }

    /// Opens a namespace file: `/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount … Anything
    /// else (a regular file, a directory, `/dev/null`, a mount namespace) is refused here, with
    /// the path named, before any caller has done anything with it.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let fd = File::open(path).map_err(netns_err("open", path))?;
        ensure_net_namespace(fd.as_fd()).map_err(netns_err("open", path))?;
        Ok(Netns {
            fd: Arc::new(fd.into()),
            path: Some(path.to_path_buf()),
        })
    }

    /// The namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<Self> {
        Self::from_path(format!("/proc/{pid}/ns/net"))
    }

    /// Wraps an fd the caller already holds (e.g. passed by a runtime). Not checked here:
    /// [`Netns::validate`] (which [`crate::Host::attach`] calls first) says whether it is a
    /// network namespace.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Netns {
            fd: Arc::new(fd),
            path: None,
        }
    }

    /// A new empty namespace that lives as long as a handle to it does.
    pub fn new_anonymous() -> Result<Self> {
        run_on_thread(|| {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| netns_err("unshare", "(anonymous)")(e.into()))?;
            Self::current()
        })
    }

    /// A new empty namespace bound at `/run/netns/NAME` (as `ip netns add NAME`).
    pub fn create_named(name: &str) -> Result<Self> {
        crate::validate::validate_id("netns", name)?;
        let dir = Path::new(NETNS_RUN_DIR);
        std::fs::create_dir_all(dir).map_err(netns_err("create dir", dir))?;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(netns_err("create", &path))?;
        let target = path.clone();
        let made = run_on_thread(move || {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| netns_err("unshare", &target)(e.into()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| netns_err("bind mount", &target)(e.into()))
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Self::from_path(&path)
    }

    /// Removes a named namespace (as `ip netns del NAME`). The namespace itself lives on while
    /// any handle or process still uses it.
    pub fn remove_named(name: &str) -> Result<()> {
        crate::validate::validate_id("netns", name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(netns_err("unmount", &path)(e.into())),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(netns_err("remove", &path)(e)),
        }
    }

    /// The path it was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How errors name this namespace: its path, else `fd N`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => format!("fd {}", self.fd.as_raw_fd()),
        }
    }

    /// Checks that the handle is a network namespace (see [`Netns::from_path`]), naming it
    /// otherwise.
    pub fn validate(&self) -> Result<()> {
        ensure_net_namespace(self.fd.as_fd()).map_err(netns_err("open", self.describe()))
    }

    /// Runs `f` on a new thread inside this namespace and waits for it. For blocking work only
    /// (opening sockets, writing /proc/sys); see [`Netns::spawn`] from async code.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.fd.clone();
        let name = self.describe();
        run_on_thread(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| netns_err("setns", &name)(e.into()))?;
            Ok(f())
        })
    }

    /// As [`Netns::run`], but awaits the thread instead of blocking the executor.
    pub async fn spawn<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.fd.clone();
        let name = self.describe();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn(move || {
                let r = setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| netns_err("setns", &name)(e.into()))
                    .map(|()| f());
                let _ = tx.send(r);
            })
            .map_err(netns_err("spawn thread", "(handle)"))?;
        rx.await.map_err(|_| {
            netns_err("join thread", "(handle)")(io::Error::other("netns thread panicked"))
        })?
    }

    /// Runs a short `f` inside this namespace on berth's shared helper thread, which enters the
    /// namespace for the call and leaves it after: no thread is started. Calls from all tasks
    /// queue there, so `f` must not block (use [`Netns::spawn`] for that).
    pub async fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.fd.clone();
        let name = self.describe();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |home: &OwnedFd| {
            if let Err(e) = setns(fd.as_fd(), CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(netns_err("setns", &name)(e.into())));
                return true;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
                netns_err("join thread", "(handle)")(io::Error::other("netns call panicked"))
            });
            let _ = tx.send(r);
            // Not back home: this thread must take no further call.
            setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_ok()
        });
        helper_run(job)?;
        rx.await.map_err(|_| {
            netns_err("join thread", "(handle)")(io::Error::other("netns helper thread died"))
        })?
    }

    /// Whether two handles name the same namespace (same inode).
    pub fn same_as(&self, other: &Netns) -> bool {
        let a = nix::sys::stat::fstat(self.fd.as_fd());
        let b = nix::sys::stat::fstat(other.fd.as_fd());
        matches!((a, b), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A call for the helper thread: gets the thread's own namespace, returns whether it is back in
/// it.
type Job = Box<dyn FnOnce(&OwnedFd) -> bool + Send>;

/// The helper thread's queue (a new thread is started when there is none or it has ended).
static HELPER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// Queues `job` on the helper thread, starting one if needed.
fn helper_run(job: Job) -> Result<()> {
    let mut slot = HELPER.lock().unwrap_or_else(|p| p.into_inner());
    let job = match slot.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let (tx, rx) = mpsc::channel::<Job>();
    let home: OwnedFd = File::open("/proc/thread-self/ns/net")
        .map_err(netns_err("open", "/proc/thread-self/ns/net"))?
        .into();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                if !job(&home) {
                    return;
                }
            }
        })
        .map_err(netns_err("spawn thread", "(helper)"))?;
    tx.send(job)
        .map_err(|_| netns_err("spawn thread", "(helper)")(io::Error::other("helper ended")))?;
    *slot = Some(tx);
    Ok(())
}

/// Runs `f` on a fresh thread (whose namespace changes die with it) and joins it.
fn run_on_thread<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)
        .map_err(netns_err("spawn thread", "(handle)"))?
        .join()
        .map_err(|_| {
            netns_err("join thread", "(handle)")(io::Error::other("netns thread panicked"))
        })?
}
