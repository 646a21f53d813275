//! Pins the fallback when the kernel refuses io_uring (seccomp in containers, a disabled
//! sysctl, gVisor): `IoBackend::Auto` logs one clear line and commits with std I/O, and
//! `IoBackend::Uring` fails to start with a clear error. The test re-runs itself in a child
//! process whose threads have a seccomp filter making `io_uring_setup` fail with EPERM,
//! exactly as Docker's default profile does.
#![allow(unsafe_code)]

use std::process::Command;

const CHILD_ENV: &str = "RIFFLE_IO_URING_BLOCKED_CHILD";

/// Makes `io_uring_setup` (syscall 425 on every Linux architecture) return EPERM for this
/// thread and the threads it creates afterwards.
fn block_io_uring() {
    const IO_URING_SETUP: u32 = 425;
    let filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls with valid arguments; `program` and `filter` outlive the
    // call (the kernel copies the filter). NO_NEW_PRIVS is required to install a filter
    // without CAP_SYS_ADMIN and only restricts this process further.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "installing the seccomp filter failed: {}", std::io::Error::last_os_error());
}

fn child() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    block_io_uring();
    use riffle_engine::{CommitConfig, CommitGroup, IoBackend, LogConfig, Record, ShardLog};
    match CommitGroup::start(CommitConfig {
        io_backend: IoBackend::Uring,
        ..CommitConfig::default()
    }) {
        Err(e) => eprintln!("explicit uring refused: {e}"),
        Ok(_) => panic!("io_uring should be unavailable under the filter"),
    }
    let group = CommitGroup::start(CommitConfig::default()).expect("Auto falls back");
    eprintln!("backend in use: {}", group.backend_name());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ShardLog::open(dir.path(), LogConfig::default(), &group).expect("open");
    let p = log
        .append_wait(&[Record { partition_key: b"k", explicit_hash_key: None, data: b"v" }])
        .expect("append");
    assert!(log.read(p, 1024).expect("read").is_some());
    eprintln!("append and read ok");
}

#[test]
fn blocked_io_uring_falls_back_to_std_with_one_log_line() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "blocked_io_uring_falls_back_to_std_with_one_log_line",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stderr}");
    assert!(
        stderr.contains("explicit uring refused: invalid configuration: io_uring is unavailable"),
        "{stderr}"
    );
    assert!(stderr.contains("backend in use: std"), "{stderr}");
    assert_eq!(
        stderr.matches("io_uring is unavailable here; using std file I/O").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("append and read ok"), "{stderr}");
}
