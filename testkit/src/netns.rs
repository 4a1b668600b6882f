//! Test bodies inside a fresh network namespace, where "public" addresses (1.2.3.4) are
//! local: a transport's SSRF policy rejects loopback, so the servers it must be allowed to
//! reach have to listen on addresses that policy calls public, and nowhere but in a
//! namespace of its own can a test own such an address.
//!
//! The test re-runs itself: [`enter_or_run`] in the parent starts the current test binary
//! again under `unshare --net`, filtered to this one test, and asserts it passed; in that
//! child it brings `lo` up, adds the addresses and lets the body run. Needs root (or
//! `CAP_SYS_ADMIN`), `unshare` (util-linux) and `ip` (iproute2).
//!
//! Inside, only the namespace's own `lo` exists: the host's TCP services on 127.0.0.1
//! (Postgres on 5432, Redis on 6379) are **not** reachable, so a `TestEnv` cannot be built
//! there. Unix sockets are files, not network, and still work (Postgres at
//! `/var/run/postgresql`). Files, processes and environment variables are the host's.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Set in the child: `<test name>|<the parent's network namespace>`.
const CHILD_ENV: &str = "STASIS_TESTKIT_NETNS_CHILD";

/// In the parent (a normal test run): runs this test again in a new network namespace,
/// panics with the child's output unless it passed, and returns `false` (the test then
/// returns). In that child: brings `lo` up, adds each of `addrs` to it (as `/32`, or
/// `/128` for IPv6) and returns `true` (the test body runs).
///
/// `test_name` is the test's path as libtest names it, for `--exact`: `my_test` in a
/// `tests/*.rs` file, `module::tests::my_test` for a unit test. Use it at the top of
/// the test, before anything the parent need not do:
///
/// ```ignore
/// #[test]
/// fn reaches_public_address() {
///     if !stasis_testkit::netns::enter_or_run("reaches_public_address", &["1.2.3.4"]) {
///         return;
///     }
///     let server = std::net::TcpListener::bind("1.2.3.4:0").unwrap();
///     // ...
/// }
/// ```
///
/// In a `#[tokio::test]` it works the same at the top of the async body: the parent
/// blocks its runtime's thread while the child runs, which nothing else needs, and the
/// child runs the async body on its own runtime.
pub fn enter_or_run(test_name: &str, addrs: &[&str]) -> bool {
    match std::env::var(CHILD_ENV) {
        Ok(marker) => {
            let (name, parent_ns) = marker.split_once('|').expect("netns child marker");
            assert_eq!(name, test_name, "netns child started for another test");
            set_up(parent_ns, addrs);
            true
        }
        Err(_) => {
            run_child(test_name);
            false
        }
    }
}

/// Whether this process is the child [`enter_or_run`] started (inside the namespace).
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// This process's network namespace, e.g. `net:[4026531840]`.
pub fn current_netns() -> String {
    let link = std::fs::read_link(Path::new("/proc/self/ns/net")).expect("read netns link");
    link.to_string_lossy().into_owned()
}

fn run_child(test_name: &str) {
    let exe = std::env::current_exe().expect("test executable path");
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{test_name}|{}", current_netns()))
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A name that matches no test exits 0 having run nothing.
    let ran = stdout.contains("test result: ok. 1 passed");
    assert!(
        out.status.success() && ran,
        "{test_name} in a new network namespace: {} (unshare needs root or CAP_SYS_ADMIN; \
         the name must be the test's full libtest path)\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
    );
    print!("{stdout}");
    eprint!("{stderr}");
}

fn set_up(parent_ns: &str, addrs: &[&str]) {
    // Never add addresses to the host's `lo`: the marker could leak into a process that
    // `unshare` did not start.
    assert_ne!(
        current_netns(),
        parent_ns,
        "{CHILD_ENV} is set but this is the parent's network namespace"
    );
    ip(&["link", "set", "lo", "up"]);
    for addr in addrs {
        let parsed: IpAddr = addr.parse().expect("an IP address");
        if parsed.is_ipv4() {
            ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        } else {
            ip(&[
                "-6",
                "addr",
                "add",
                &format!("{addr}/128"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
