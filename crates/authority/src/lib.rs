//! placeholder
#![forbid(unsafe_code)]
pub mod admin;
mod assertion;
pub mod authority;
mod decision;
mod device;
pub mod error;
mod federation;
mod issue;
pub mod keys;
mod password;
pub mod resource;
mod secrets;
pub mod store;
