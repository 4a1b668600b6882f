pub mod activity;
pub mod admin;
pub mod fleet;
pub mod health;
pub mod hooks;
pub mod mirror;
pub mod repos;
pub mod user;
