// `sqlx::migrate!` embeds ../migrations when this crate compiles; cargo does not know
// that, so a new migration alone would not rebuild it (sqlx documents this build script).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
