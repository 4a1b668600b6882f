pub mod admin;
pub mod health;
pub mod repos;
