//! Flags more than one command takes.

use std::time::Duration;

/// Which environment a command works on: `environments/<env>.yaml`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvArg {
    /// The environment, a file in environments/ (local, dev, staging, prod, ...).
    #[arg(long = "env", short = 'e', default_value = "local", env = "IMAGE_ANALYZER_ENV")]
    pub name: String,
}

/// Parses `90`, `90s`, `5m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("`{text}` is not a duration like 90s or 5m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
