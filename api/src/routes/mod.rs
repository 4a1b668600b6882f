pub mod health;
pub mod repos;
