//! The operations the commands run: build, deploy, destroy, smoke test, promote, rollback,
//! history and outputs, and the sequence most of them share, apply-and-record. Each takes
//! what it needs to ask and to say through a [`ui::Ui`], and returns its result for the
//! command to print; none reads standard input or writes standard output itself.

pub mod apply;
pub mod build;
pub mod deploy;
pub mod destroy;
pub mod drift;
pub mod history;
pub mod local;
pub mod outputs;
pub mod plan;
pub mod promote;
pub mod rollback;
pub mod smoke_test;
pub mod ui;
