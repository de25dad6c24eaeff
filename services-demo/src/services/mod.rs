//! The app's background services, each declared where it lives; `main` never lists them.

mod billing;
mod cache;
mod health;
mod reports;
mod storage;
mod store;

pub(crate) use store::Store;
