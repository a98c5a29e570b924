//! The deploy engine: desired resources and recorded state in, a plan of steps out, and an
//! executor that applies a plan along the dependency graph.

pub mod apply;
#[cfg(test)]
pub mod fake;
pub mod graph;
pub mod plan;
pub mod provider;
pub mod resource;
