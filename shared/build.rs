// `sqlx::migrate!` embeds ../migrations when this crate compiles; cargo does not know
// that, so a new migration alone would not rebuild it (sqlx documents this build script).
//
// `STASIS_REVISION`, the commit in `stasis_build_info{revision}`: the variable when the
// build sets it (the Dockerfile, whose context has no .git), else what git says of the
// checkout, else `unknown`.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-env-changed=STASIS_REVISION");
    let revision = std::env::var("STASIS_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // a new commit moves HEAD or the branch it names: rebuild to report it
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rustc-env=STASIS_REVISION={revision}");
}
