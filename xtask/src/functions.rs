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
    /// The API routes that invoke it.
    pub routes: &'static [Route],
    /// The events that invoke it asynchronously.
    pub triggers: &'static [Trigger],
    /// What it may do; its IAM policy grants exactly these.
    pub capabilities: &'static [Capability],
    /// The environment variables it reads, derived from the environment's configuration.
    pub settings: &'static [Setting],
    /// Memory in MB and timeout in seconds when the environment file does not say.
    pub default_memory_mb: u32,
    pub default_timeout_seconds: u32,
}

/// An API route. Its `name` names its resources (`route.<name>`, `permission.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub name: &'static str,
    pub method: Method,
    pub path: &'static str,
}

impl Route {
    /// API Gateway's route key, e.g. `GET /analysis/{id}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The route's resource path in an `execute-api` ARN: each `{variable}` is `*`.
    pub fn arn_path(&self) -> String {
        self.path
            .split('/')
            .map(|segment| if segment.starts_with('{') && segment.ends_with('}') { "*" } else { segment })
            .collect::<Vec<_>>()
            .join("/")
    }
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

/// An event source that invokes a function asynchronously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An object created in the upload bucket under `uploads/` with an image's extension
    /// (`.jpg`, `.png`). The filter keeps everything else out, `results/` above all, so
    /// nothing the function writes can trigger it.
    UploadCreated,
}

/// Something a function may do, each granted on exactly its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// `s3:PutObject` under `uploads/` (what presigned upload URLs are signed for).
    PutUploads,
    /// `s3:GetObject` under `uploads/` (HeadObject needs it too).
    GetUploads,
    /// `s3:GetObject` and `s3:PutObject` under `results/`: reading and keeping analyses.
    StoreResults,
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
    /// `MAX_UPLOAD_BYTES`
    MaxUploadBytes,
    /// `REQUIRE_CONTENT_LENGTH`
    RequireContentLength,
}

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "upload-url",
        routes: &[Route { name: "upload-url", method: Method::Get, path: "/upload-url" }],
        triggers: &[],
        capabilities: &[Capability::PutUploads],
        settings: &[
            Setting::UploadBucket,
            Setting::UploadUrlExpiry,
            Setting::MaxUploadBytes,
            Setting::RequireContentLength,
        ],
        default_memory_mb: 128,
        default_timeout_seconds: 5,
    },
    Function {
        name: "analyze",
        // One function for every way an image is analysed (see lambdas/analyze).
        routes: &[
            Route { name: "analyze", method: Method::Post, path: "/analyze" },
            Route { name: "analysis", method: Method::Get, path: "/analysis/{id}" },
        ],
        triggers: &[Trigger::UploadCreated],
        capabilities: &[Capability::GetUploads, Capability::StoreResults, Capability::DetectFaces],
        settings: &[Setting::UploadBucket],
        default_memory_mb: 256,
        // Lambda's own default of 3 s is too tight for DetectFaces.
        default_timeout_seconds: 10,
    },
    Function {
        // The page people use (lambdas/web): static, embedded in the binary, no AWS access.
        name: "web",
        routes: &[Route { name: "page", method: Method::Get, path: "/" }],
        triggers: &[],
        capabilities: &[],
        // The page refuses a photo over the upload limit before uploading it.
        settings: &[Setting::MaxUploadBytes],
        default_memory_mb: 128,
        default_timeout_seconds: 3,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_variables_become_wildcards_in_execute_api_arns() {
        let route = Route { name: "analysis", method: Method::Get, path: "/analysis/{id}" };
        assert_eq!(route.key(), "GET /analysis/{id}");
        assert_eq!(route.arn_path(), "/analysis/*");
    }

    #[test]
    fn the_root_route_is_the_root_in_execute_api_arns() {
        let route = Route { name: "page", method: Method::Get, path: "/" };
        assert_eq!(route.key(), "GET /");
        assert_eq!(route.arn_path(), "/");
    }

    #[test]
    fn route_names_are_unique() {
        let mut names: Vec<&str> = FUNCTIONS.iter().flat_map(|f| f.routes.iter().map(|r| r.name)).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "two routes share a name: their resources would collide");
    }
}
