//! The environment file as written: serde types whose visitors run every check, so that an
//! error carries the position of the value at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::rules::{
    check_bucket, check_endpoint, check_env_name, check_origin, check_prefix, check_project, check_region,
    check_tag_key, check_tag_value,
};
use super::LOG_RETENTION_DAYS;
use crate::arch::Arch;
use crate::functions::FUNCTIONS;

// The file as written. Every check runs inside a visitor, so errors carry the value's position.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of environment settings")]
pub(super) struct RawEnvironment {
    pub(super) project: ProjectName,
    pub(super) environment: EnvName,
    pub(super) region: Region,
    #[serde(default)]
    pub(super) endpoint: Option<Endpoint>,
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) functions: Option<FunctionOverrides>,
    pub(super) log_retention_days: RetentionDays,
    #[serde(default)]
    pub(super) upload_url_expiry_seconds: Option<UploadUrlExpirySeconds>,
    #[serde(default)]
    pub(super) max_upload_bytes: Option<MaxUploadBytes>,
    #[serde(default)]
    pub(super) require_content_length: Option<bool>,
    pub(super) cors_allowed_origins: CorsOrigins,
    pub(super) uploads_expire_after_days: UploadsExpireAfterDays,
    pub(super) throttling: RawThrottling,
    #[serde(default)]
    pub(super) tags: Option<Tags>,
    pub(super) protect: bool,
    #[serde(default)]
    pub(super) promote_from: Option<EnvName>,
    #[serde(default)]
    pub(super) local: Option<RawLocal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `bucket` and `prefix`")]
pub(super) struct RawState {
    pub(super) bucket: BucketName,
    pub(super) prefix: StatePrefix,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of function settings (`memory_mb`, `timeout_seconds`, `architecture`, \
                 `reserved_concurrency`)"
)]
pub(super) struct RawFunction {
    #[serde(default)]
    pub(super) memory_mb: Option<MemoryMb>,
    #[serde(default)]
    pub(super) timeout_seconds: Option<TimeoutSeconds>,
    #[serde(default)]
    pub(super) architecture: Option<Arch>,
    #[serde(default)]
    pub(super) reserved_concurrency: Option<ReservedConcurrency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `rate_limit` and `burst_limit`")]
pub(super) struct RawThrottling {
    pub(super) rate_limit: RateLimit,
    pub(super) burst_limit: BurstLimit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `api_port` and, optionally, `max_instances` and `emulator`")]
pub(super) struct RawLocal {
    pub(super) api_port: ApiPort,
    #[serde(default)]
    pub(super) max_instances: Option<MaxInstances>,
    #[serde(default)]
    pub(super) emulator: Option<super::EmulatorKind>,
}

// --- integers ---------------------------------------------------------------------------------

/// Accepts a YAML integer in `min..=max` (quoted numbers are strings, and rejected).
pub(super) struct IntInRange {
    min: u32,
    max: u32,
}

impl<'de> Visitor<'de> for IntInRange {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.max == u32::MAX {
            write!(f, "an integer of at least {}", self.min)
        } else {
            write!(f, "an integer from {} to {}", self.min, self.max)
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        match u32::try_from(v) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ if self.max == u32::MAX && v >= u64::from(self.min) => {
                Err(E::custom(format!("{v} is too large; at most {} is supported", u32::MAX)))
            }
            _ if self.max == u32::MAX => Err(E::custom(format!("must be at least {}, got {v}", self.min))),
            _ => Err(E::custom(format!("must be between {} and {}, got {v}", self.min, self.max))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) if self.max == u32::MAX => Err(E::custom(format!("must be at least {}, got {v}", self.min))),
            Err(_) => Err(E::custom(format!("must be between {} and {}, got {v}", self.min, self.max))),
        }
    }
}

macro_rules! int_in_range {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $name(pub(super) u32);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IntInRange { min: $min, max: $max }).map($name)
            }
        }
    };
}

int_in_range!(
    /// Lambda memory, MB.
    MemoryMb, 128, 10240
);
int_in_range!(
    /// Lambda timeout, seconds.
    TimeoutSeconds, 1, 900
);
int_in_range!(UploadUrlExpirySeconds, 1, 3600);
int_in_range!(
    /// The largest upload a presigned URL is issued for, bytes: at most Rekognition's limit
    /// for an image in S3 (15 MiB), since a larger one could never be analysed.
    MaxUploadBytes, 1, 15 * 1024 * 1024
);
int_in_range!(
    /// Instances of one function that may run at once in AWS (Lambda's reserved concurrency;
    /// 0 stops the function). The local cloud honours it as its instance cap.
    ReservedConcurrency, 0, 10_000
);
int_in_range!(
    /// Instances of one function the local cloud runs at once.
    MaxInstances, 1, 1000
);
int_in_range!(UploadsExpireAfterDays, 1, u32::MAX);
int_in_range!(BurstLimit, 1, u32::MAX);

pub(super) struct ApiPort(pub(super) u16);

impl<'de> Deserialize<'de> for ApiPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let port = d.deserialize_any(IntInRange { min: 1024, max: u32::from(u16::MAX) })?;
        // In range by construction.
        Ok(ApiPort(u16::try_from(port).unwrap_or(u16::MAX)))
    }
}

pub(super) struct RetentionDays(pub(super) u32);

impl<'de> Deserialize<'de> for RetentionDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of days CloudWatch Logs accepts")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                match u32::try_from(v) {
                    Ok(days) if LOG_RETENTION_DAYS.contains(&days) => Ok(days),
                    _ => Err(E::custom(retention_message(v))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(retention_message(0))),
                }
            }
        }
        d.deserialize_any(V).map(RetentionDays)
    }
}

pub(super) fn retention_message(days: u64) -> String {
    let below = LOG_RETENTION_DAYS.iter().rev().find(|&&d| u64::from(d) < days);
    let above = LOG_RETENTION_DAYS.iter().find(|&&d| u64::from(d) > days);
    let nearest = match (below, above) {
        (Some(b), Some(a)) => format!("{b} or {a}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => String::new(),
    };
    let allowed = LOG_RETENTION_DAYS.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("CloudWatch Logs does not accept {days} days (nearest: {nearest}); it accepts {allowed}")
}

pub(super) struct RateLimit(pub(super) f64);

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of requests per second greater than 0")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(v)
                } else {
                    Err(E::custom(format!("must be a finite number greater than 0, got {v}")))
                }
            }
            #[allow(clippy::cast_precision_loss)] // any realistic rate is exact
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V).map(RateLimit)
    }
}

// --- strings ----------------------------------------------------------------------------------

/// Accepts a YAML scalar as a string and runs `check` on it.
pub(super) struct CheckedStr {
    expecting: &'static str,
    check: fn(&str) -> Result<(), String>,
}

impl<'de> Visitor<'de> for CheckedStr {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
}

macro_rules! checked_string {
    ($name:ident, $expecting:literal, $check:path) => {
        #[derive(Debug, Clone)]
        pub(super) struct $name(pub(super) String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(CheckedStr { expecting: $expecting, check: $check }).map($name)
            }
        }
    };
}

checked_string!(ProjectName, "a project name", check_project);
checked_string!(EnvName, "an environment name", check_env_name);
checked_string!(Region, "an AWS region name", check_region);
checked_string!(Endpoint, "an http(s) URL", check_endpoint);
checked_string!(BucketName, "an S3 bucket name", check_bucket);
checked_string!(StatePrefix, "an S3 key prefix", check_prefix);
checked_string!(TagValue, "a tag value", check_tag_value);

// --- collections ------------------------------------------------------------------------------

/// `functions:`: keys from [`FUNCTIONS`], each at most once.
#[derive(Default)]
pub(super) struct FunctionOverrides(pub(super) BTreeMap<&'static str, RawFunction>);

pub(super) const UNKNOWN_FUNCTION: &str = "unknown function `";

impl<'de> Deserialize<'de> for FunctionOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FunctionOverrides;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from function name to settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key_seed(CheckedKey(function_key))? {
                    let settings = map.next_value::<RawFunction>()?;
                    out.insert(name, settings);
                }
                Ok(FunctionOverrides(out))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) fn function_key(name: &str) -> Result<&'static str, String> {
    FUNCTIONS.iter().find(|f| f.name == name).map(|f| f.name).ok_or_else(|| format!("{UNKNOWN_FUNCTION}{name}`"))
}

/// `tags:`: AWS tag rules, each key at most once, at most 50 tags.
#[derive(Default)]
pub(super) struct Tags(pub(super) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of tag keys to tag values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key_seed(CheckedKey(tag_key))? {
                    let value = map.next_value::<TagValue>()?;
                    out.insert(key, value.0);
                }
                if out.len() > 50 {
                    return Err(de::Error::custom(format!(
                        "AWS allows at most 50 tags on a resource; this sets {}",
                        out.len()
                    )));
                }
                Ok(Tags(out))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) fn tag_key(key: &str) -> Result<String, String> {
    check_tag_key(key).map(|()| key.to_string())
}

/// A mapping key that must pass a check. The check runs inside the visitor, so its error
/// points at the key. (Repeated keys are caught earlier, by [`NoDuplicateKeys`].)
pub(super) struct CheckedKey<K>(fn(&str) -> Result<K, String>);

impl<'de, K> DeserializeSeed<'de> for CheckedKey<K> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K> Visitor<'de> for CheckedKey<K> {
    type Value = K;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<K, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// Any YAML document in which no mapping repeats a key; the error points at the repeat.
pub(super) struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        NoDuplicateKeys::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self, D::Error> {
        NoDuplicateKeys::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = BTreeSet::new();
        while map.next_key_seed(NewKey(&mut seen))?.is_some() {
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self, A::Error> {
        // A tagged value (`!tag x`): check what is inside.
        let (IgnoredAny, variant) = data.variant()?;
        de::VariantAccess::newtype_variant(variant)
    }
}

/// A scalar mapping key not seen before in its mapping (compared as text; keys that are
/// themselves collections are not compared).
pub(super) struct NewKey<'a>(&'a mut BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for NewKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl NewKey<'_> {
    fn insert<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(format!("`{key}` is set more than once")));
        }
        self.0.insert(key);
        Ok(())
    }
}

impl<'de> Visitor<'de> for NewKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.insert(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.insert("null".to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        NoDuplicateKeys.visit_seq(seq).map(|_| ())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        NoDuplicateKeys.visit_map(map).map(|_| ())
    }
}

/// `cors_allowed_origins:`: distinct origins, or exactly `["*"]`.
pub(super) struct CorsOrigins(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CorsOrigins;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of origins like `https://app.example.com`, or `[\"*\"]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<String> = Vec::new();
                while let Some(origin) = seq.next_element_seed(OriginSeed { previous: &out })? {
                    out.push(origin);
                }
                Ok(CorsOrigins(out))
            }
        }
        d.deserialize_seq(V)
    }
}

pub(super) struct OriginSeed<'a> {
    previous: &'a [String],
}

impl<'de> DeserializeSeed<'de> for OriginSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for OriginSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an origin like `https://app.example.com`, or `*`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v == "*" || self.previous.iter().any(|p| p == "*") {
            if !self.previous.is_empty() {
                return Err(E::custom("`*` allows every origin, so it must be the only entry"));
            }
            return Ok(v.to_string());
        }
        if self.previous.iter().any(|p| p == v) {
            return Err(E::custom(format!("`{v}` is listed more than once")));
        }
        check_origin(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
}
