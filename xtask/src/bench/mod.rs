//! `cargo xtask bench`: measurements of the deployer and the deployed product on the local
//! cloud. The `bench` command runs them; this module holds the pieces and the report.

pub mod deploy;
pub mod events;
pub mod latency;
pub mod load;
pub mod proxy;
pub mod report;
