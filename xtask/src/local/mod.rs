//! The local cloud: the AWS emulator (moto), the local face-analysis service, and the data
//! plane that serves deployed HTTP APIs and runs the deployed Lambda artifacts on this
//! machine, because the emulator does not execute Lambdas.

pub mod cloud;
pub mod dataplane;
pub mod discovery;
pub mod emulator;
pub mod event;
pub mod face;
pub mod http;
pub mod layout;
pub mod procs;
pub mod runtime;
pub mod trust;
