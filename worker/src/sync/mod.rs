//! One sync, step by step: the async pipeline a delivery runs once its repository's lease
//! is held. Each step here decides and records; the blocking git work each one drives
//! lives in [`crate::git`].

pub(crate) mod after;
pub(crate) mod attempt;
pub(crate) mod fetch;
pub mod housekeeping;
pub(crate) mod lfs;
pub(crate) mod moving;
pub(crate) mod observe;
pub mod owner_text;
pub(crate) mod progress;
pub mod record;
