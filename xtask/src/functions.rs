//! The Lambda functions this project ships, with what each serves and may touch. The whole
//! stack is derived from this table (see [`crate::stack`]): adding a function is one row
//! here plus its crate under `lambdas/`.

use std::fmt;

/// One Lambda function. Its Cargo package lives at `lambdas/<name>` and builds a binary of the
/// same name, which cargo-lambda turns into `target/lambda/<name>/bootstrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Package name = binary name = function key in the manifest.
    pub name: &'static str,
    /// The API route that invokes it.
    pub route: Route,
    /// What it may do; its IAM policy grants exactly these.
    pub capabilities: &'static [Capability],
    /// The environment variables it reads, derived from the environment's configuration.
    pub settings: &'static [Setting],
    /// Memory in MB and timeout in seconds when the environment file does not say.
    pub default_memory_mb: u32,
    pub default_timeout_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
        })
    }
}

/// Something a function may do, each granted on exactly its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// `s3:PutObject` under `uploads/` (what presigned upload URLs are signed for).
    PutUploads,
    /// `s3:GetObject` under `uploads/` (HeadObject needs it too).
    GetUploads,
    /// `rekognition:DetectFaces`.
    DetectFaces,
}

/// A configuration value a function reads from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setting {
    /// `UPLOAD_BUCKET`
    UploadBucket,
    /// `UPLOAD_URL_EXPIRY_SECONDS`
    UploadUrlExpiry,
}

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "upload-url",
        route: Route { method: Method::Get, path: "/upload-url" },
        capabilities: &[Capability::PutUploads],
        settings: &[Setting::UploadBucket, Setting::UploadUrlExpiry],
        default_memory_mb: 128,
        default_timeout_seconds: 5,
    },
    Function {
        name: "analyze",
        route: Route { method: Method::Post, path: "/analyze" },
        capabilities: &[Capability::GetUploads, Capability::DetectFaces],
        settings: &[Setting::UploadBucket],
        default_memory_mb: 256,
        // Lambda's own default of 3 s is too tight for DetectFaces.
        default_timeout_seconds: 10,
    },
];
