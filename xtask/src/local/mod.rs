//! The local data plane: serves deployed HTTP APIs and runs the deployed Lambda artifacts
//! on this machine, because the AWS emulator does not execute Lambdas.

pub mod cloud;
pub mod dataplane;
pub mod discovery;
pub mod event;
pub mod face;
pub mod layout;
pub mod procs;
pub mod runtime;
