//! What a broken environment file is told: the error type, located at the file, line, column and
//! field at fault, and the hints it gives (did you mean, the list of environments).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::schema::UNKNOWN_FUNCTION;
use crate::functions::FUNCTIONS;

/// A position in an environment file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl Location {
    pub(super) fn new(file: &Path, location: Option<serde_yaml::Location>) -> Self {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (line, column) = location.map_or((1, 1), |l| (narrow(l.line()), narrow(l.column())));
        Location { file: file.to_path_buf(), line, column }
    }
}

/// Why an environment could not be loaded. Displays as `file:line:column: field: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid YAML (or not exactly one document).
    #[error("{at}: invalid YAML: {message}")]
    Syntax { at: Location, message: String },
    /// A key that the mapping does not have.
    #[error("{at}: {field}: unknown field `{key}`{}", unknown_field_hint(expected, suggestion.as_deref()))]
    UnknownField { at: Location, field: String, key: String, expected: Box<[String]>, suggestion: Option<String> },
    /// A key under `functions:` that is not one of [`FUNCTIONS`].
    #[error("{at}: {field}: unknown function `{name}`; the functions are {}{}", backticked(&function_names()), did_you_mean(suggestion.as_deref()))]
    UnknownFunction { at: Location, field: String, name: String, suggestion: Option<String> },
    /// A value of the wrong YAML type (a string where a number belongs, ...).
    #[error("{at}: {}{message}", field_prefix(field))]
    WrongType { at: Location, field: String, message: String },
    /// A required field is absent. `at` is the mapping that lacks it.
    #[error("{at}: {field}: missing required field")]
    MissingField { at: Location, field: String },
    /// A value of the right type that breaks a rule (a range, a naming rule, ...).
    #[error("{at}: {}{message}", field_prefix(field))]
    InvalidValue { at: Location, field: String, message: String },
    /// No `<name>.yaml` in the environments directory.
    #[error("unknown environment `{name}`; {}", list_environments(dir, available, suggestion.as_deref()))]
    UnknownEnvironment { dir: PathBuf, name: String, available: Vec<String>, suggestion: Option<String> },
}

impl ConfigError {
    /// Where in the file the error is, when it is in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownField { at, .. }
            | ConfigError::UnknownFunction { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::MissingField { at, .. }
            | ConfigError::InvalidValue { at, .. } => Some(at),
            ConfigError::Read { .. } | ConfigError::UnknownEnvironment { .. } => None,
        }
    }

    /// The field path, like `functions.analyze.memory_mb` (empty for the document itself).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { field, .. }
            | ConfigError::UnknownFunction { field, .. }
            | ConfigError::WrongType { field, .. }
            | ConfigError::MissingField { field, .. }
            | ConfigError::InvalidValue { field, .. } => Some(field),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::UnknownEnvironment { .. } => None,
        }
    }

    /// The nearest valid name, for misspelt keys, functions and environments.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownField { suggestion, .. }
            | ConfigError::UnknownFunction { suggestion, .. }
            | ConfigError::UnknownEnvironment { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }

    pub(super) fn from_serde(file: &Path, err: &serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        let segments: Vec<String> = err.path().iter().map(ToString::to_string).collect();
        let field = join_path(&segments);
        let at = Location::new(file, err.inner().location());
        let message = bare_message(err.inner(), &segments);

        if let Some(rest) = message.strip_prefix("unknown field `") {
            // serde_path_to_error's path ends with the unknown key itself.
            let key = segments.last().cloned().unwrap_or_default();
            let expected_list = rest.strip_prefix(key.as_str()).and_then(|r| r.strip_prefix("`, ")).unwrap_or(rest);
            let expected = backticked_names(expected_list);
            let suggestion = suggest(&key, expected.iter().map(String::as_str));
            return ConfigError::UnknownField { at, field, key, expected: expected.into_boxed_slice(), suggestion };
        }
        if let Some(name) = message.strip_prefix(UNKNOWN_FUNCTION).and_then(|r| r.strip_suffix('`')) {
            return ConfigError::UnknownFunction {
                at,
                field,
                name: name.to_string(),
                suggestion: suggest(name, FUNCTIONS.iter().map(|f| f.name)),
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let missing = rest.strip_suffix('`').unwrap_or(rest);
            return ConfigError::MissingField { at, field: join_path(&[field, missing.to_string()]) };
        }
        if let Some(rest) = message.strip_prefix("duplicate field `") {
            let duplicate = rest.strip_suffix('`').unwrap_or(rest);
            return ConfigError::InvalidValue {
                at,
                field: join_path(&[field, duplicate.to_string()]),
                message: format!("`{duplicate}` is set more than once"),
            };
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            // An enum value such as `architecture: arm`.
            let (value, expected_list) = rest.split_once("`, ").unwrap_or((rest, ""));
            let expected = backticked_names(expected_list);
            let message = format!(
                "unknown value `{value}`; expected {}{}",
                backticked(&expected),
                did_you_mean(suggest(value, expected.iter().map(String::as_str)).as_deref())
            );
            return ConfigError::InvalidValue { at, field, message };
        }
        if message.starts_with("invalid type: ") {
            return ConfigError::WrongType { at, field, message };
        }
        ConfigError::InvalidValue { at, field, message }
    }
}

pub(super) fn syntax_error(file: &Path, text: &str, err: &serde_yaml::Error) -> ConfigError {
    if let Some(l) = err.location() {
        let message = err.to_string().replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1);
        return ConfigError::Syntax { at: Location::new(file, Some(l)), message };
    }
    if let Some(line) = second_document_line(text) {
        return ConfigError::Syntax {
            at: Location { file: file.to_path_buf(), line, column: 1 },
            message: "a second YAML document starts here; an environment file holds one".into(),
        };
    }
    ConfigError::Syntax { at: Location::new(file, None), message: err.to_string() }
}

/// The 1-based line of a `---` that follows content, i.e. starts a second document.
pub(super) fn second_document_line(text: &str) -> Option<u32> {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && seen_content {
            return Some(u32::try_from(i + 1).unwrap_or(u32::MAX));
        }
        let trimmed = line.trim();
        if !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with("---")) {
            seen_content = true;
        }
    }
    None
}

pub(super) fn is_blank_document(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// The message of a serde_yaml error without the path prefix and the position suffix that its
/// `Display` adds (we print both ourselves, in our own format).
pub(super) fn bare_message(err: &serde_yaml::Error, segments: &[String]) -> String {
    let mut message = err.to_string();
    if let Some(l) = err.location() {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // serde_yaml prefixes the path of the node it was deserializing, which is the path we have
    // or one of its ancestors (for a bad key, the mapping holding it). Same syntax as ours.
    for len in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", join_path(&segments[..len]));
        if let Some(stripped) = message.strip_prefix(&prefix) {
            return stripped.to_string();
        }
    }
    message
}

/// Joins path segments the way serde_yaml and serde_path_to_error print them: `a.b[0].c`.
pub(super) fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// The names between backticks in serde's "expected `a`, `b` or `c`" lists.
pub(super) fn backticked_names(list: &str) -> Vec<String> {
    list.split('`').skip(1).step_by(2).map(String::from).collect()
}

pub(super) fn backticked(names: &[impl AsRef<str>]) -> String {
    names.iter().map(|n| format!("`{}`", n.as_ref())).collect::<Vec<_>>().join(", ")
}

pub(super) fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

pub(super) fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

pub(super) fn unknown_field_hint(expected: &[String], suggestion: Option<&str>) -> String {
    match (suggestion, expected) {
        (Some(s), _) => format!(" (did you mean `{s}`?)"),
        (None, []) => "; this mapping takes no fields".to_string(),
        (None, [only]) => format!("; the only field here is `{only}`"),
        (None, _) => format!("; expected one of {}", backticked(expected)),
    }
}

pub(super) fn function_names() -> Vec<&'static str> {
    FUNCTIONS.iter().map(|f| f.name).collect()
}

pub(super) fn list_environments(dir: &Path, available: &[String], suggestion: Option<&str>) -> String {
    let dir = dir.display().to_string();
    let dir = dir.trim_end_matches('/');
    if available.is_empty() {
        format!("{dir}/ has no *.yaml files")
    } else {
        format!("{dir}/ has: {}{}", available.join(", "), did_you_mean(suggestion))
    }
}

/// The candidate nearest to `input`, if it is near enough to be a plausible typo: similar by
/// Jaro-Winkler (>= 0.85), one edit or transposition away, or a part of the name (`timeout`
/// for `timeout_seconds`, `port` for `api_port`). Ties go to the higher similarity.
pub(super) fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let input = input.to_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let similarity = strsim::jaro_winkler(&input, &lower);
            let near = similarity >= 0.85
                || strsim::osa_distance(&input, &lower) <= 1
                || (input.len() >= 3 && (lower.contains(&input) || input.contains(&lower)));
            near.then_some((similarity, c))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// The position of the value of top-level `key` in `text` (or of the document, if absent), for
/// errors found after deserialization. Works by deserializing again with a visitor that fails
/// on that value, so serde_yaml reports where it is.
pub(super) fn locate_top_level_value(file: &Path, text: &str, key: &str) -> Location {
    struct Finder<'k>(&'k str);
    struct Here;

    impl<'de> Visitor<'de> for Here {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("nothing (locating a value)")
        }
    }
    impl<'de> DeserializeSeed<'de> for Here {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<String>()? {
                if k == self.0 {
                    map.next_value_seed(Here)?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }

    let location =
        serde_yaml::Deserializer::from_str(text).deserialize_map(Finder(key)).err().and_then(|e| e.location());
    Location::new(file, location)
}
