//! HTTP APIs as deployed: their routes, integrations, stages and CORS configuration, read
//! from API Gateway v2, and the routing of a request the way HTTP APIs route it.

use anyhow::{anyhow, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// One HTTP API, as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub region: String,
    pub tags: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub integrations: BTreeMap<String, Integration>,
    /// Stage names, `$default` included when deployed.
    pub stages: Vec<String>,
    /// Each stage's throttling, by stage name.
    pub throttling: BTreeMap<String, Throttling>,
    pub cors: Option<Cors>,
}

/// A stage's throttling: the limit every route gets, and the routes that have their own, by
/// route key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throttling {
    pub default: Option<Limit>,
    pub routes: BTreeMap<String, Limit>,
}

impl Throttling {
    /// The limit of the route with `route_key`; `None` for no limit.
    pub fn limit_for(&self, route_key: &str) -> Option<Limit> {
        self.routes.get(route_key).copied().or(self.default)
    }
}

/// A token bucket's size: steady-state requests per second, and the burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
}

impl Limit {
    /// The limit route settings set, when they set both halves of it.
    fn of(settings: &aws_sdk_apigatewayv2::types::RouteSettings) -> Option<Limit> {
        let rate = settings.throttling_rate_limit()?;
        let burst = u32::try_from(settings.throttling_burst_limit()?).ok()?;
        Some(Limit { rate, burst })
    }
}

/// A route: its key as deployed, parsed, and the integration its target names.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    pub key: String,
    pub parsed: RouteKey,
    /// From a target `integrations/<id>`.
    pub integration_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// `$default`: whatever no other route matches.
    Default,
    /// `METHOD /path`, METHOD possibly `ANY`; the path a template with `{name}` and a final
    /// `{name+}`.
    Route { method: String, segments: Vec<Segment> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Variable(String),
    /// `{name+}`: one or more remaining segments.
    Greedy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    /// `AWS_PROXY`, `HTTP_PROXY`, ...
    pub kind: String,
    pub uri: String,
    pub payload_format_version: String,
    /// API Gateway's own limit for the integration (30 s unless set lower).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<i32>,
    pub allow_credentials: bool,
}

/// A request matched to a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub stage: String,
    pub path_parameters: BTreeMap<String, String>,
}

impl Api {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The environment the API belongs to: its `environment` tag (the deployer tags every
    /// resource), else the `<env>` of a `<project>-<env>-api` name whose project tag matches.
    pub fn environment(&self) -> Option<String> {
        if let Some(environment) = self.tag("environment") {
            return Some(environment.to_owned());
        }
        let project = self.tag("project")?;
        let rest = self.name.strip_prefix(project)?.strip_prefix('-')?;
        rest.strip_suffix("-api").filter(|env| !env.is_empty()).map(str::to_owned)
    }

    /// Whether this is `project`'s API for `environment`: tagged so, and named
    /// `<project>-<environment>-api`.
    pub fn is_environment(&self, project: &str, environment: &str) -> bool {
        self.tag("project") == Some(project)
            && self.tag("environment") == Some(environment)
            && self.name == format!("{project}-{environment}-api")
    }

    /// The route a request takes, as HTTP APIs choose it: the stage first (`$default`, or
    /// the path's first segment naming a stage), then the most specific `METHOD /path` or
    /// `ANY /path` route (literal segments over `{variables}` over a greedy `{proxy+}`, and
    /// a route with the request's method over `ANY`), then `$default`. `None` is a 404.
    pub fn route(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let (stage, path): (String, &str) = if self.stages.iter().any(|stage| stage == "$default") {
            ("$default".to_owned(), path)
        } else {
            let trimmed = path.strip_prefix('/')?;
            let first = trimmed.split('/').next().unwrap_or_default();
            let stage = self.stages.iter().find(|stage| stage.as_str() == first)?;
            // What follows the stage, with its leading slash.
            (stage.clone(), &trimmed[first.len()..])
        };
        let path = if path.is_empty() { "/" } else { path };
        let segments = split_path(path);
        let mut best: Option<(RouteRank, &Route, BTreeMap<String, String>)> = None;
        for route in &self.routes {
            let RouteKey::Route { method: route_method, segments: template } = &route.parsed else { continue };
            let is_any = route_method == "ANY";
            if !is_any && route_method != method {
                continue;
            }
            let Some(parameters) = match_segments(template, &segments) else { continue };
            let rank = RouteRank::of(template, is_any);
            if best.as_ref().is_none_or(|(best_rank, _, _)| rank < *best_rank) {
                best = Some((rank, route, parameters));
            }
        }
        if let Some((_, route, path_parameters)) = best {
            return Some(Matched { route, stage, path_parameters });
        }
        let default = self.routes.iter().find(|route| route.parsed == RouteKey::Default)?;
        Some(Matched { route: default, stage, path_parameters: BTreeMap::new() })
    }
}

/// Orders candidate routes: lower is more specific.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RouteRank {
    greedy: bool,
    /// For greedy routes, more segments before the greedy one is more specific.
    fewer_fixed_segments: std::cmp::Reverse<usize>,
    /// Per segment, 0 for a literal and 1 for a variable: literals earlier win.
    kinds: Vec<u8>,
    any_method: bool,
}

impl RouteRank {
    fn of(template: &[Segment], any_method: bool) -> Self {
        let greedy = matches!(template.last(), Some(Segment::Greedy(_)));
        let fixed = template.iter().filter(|segment| !matches!(segment, Segment::Greedy(_))).count();
        Self {
            greedy,
            fewer_fixed_segments: std::cmp::Reverse(if greedy { fixed } else { 0 }),
            kinds: template.iter().map(|segment| u8::from(!matches!(segment, Segment::Literal(_)))).collect(),
            any_method,
        }
    }
}

/// `/a/b/` -> `["a", "b", ""]`; `/` -> `[]`.
pub(super) fn split_path(path: &str) -> Vec<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

pub(super) fn match_segments(template: &[Segment], segments: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut parameters = BTreeMap::new();
    for (index, part) in template.iter().enumerate() {
        match part {
            Segment::Greedy(name) => {
                let rest = segments.get(index..).filter(|rest| !rest.is_empty())?;
                let value = rest.join("/");
                if value.is_empty() {
                    return None;
                }
                parameters.insert(name.clone(), decode(&value));
                return Some(parameters);
            }
            Segment::Literal(literal) => {
                if segments.get(index) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Variable(name) => {
                let value = segments.get(index).filter(|value| !value.is_empty())?;
                parameters.insert(name.clone(), decode(value));
            }
        }
    }
    (template.len() == segments.len()).then_some(parameters)
}

pub(super) fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Parses a route key: `$default`, or `METHOD /path/{var}/{proxy+}`.
pub fn parse_route_key(key: &str) -> Option<RouteKey> {
    if key == "$default" {
        return Some(RouteKey::Default);
    }
    let (method, path) = key.split_once(' ')?;
    if method.is_empty() || !path.starts_with('/') {
        return None;
    }
    let segments = split_path(path)
        .into_iter()
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => match name.strip_suffix('+') {
                Some(name) => Segment::Greedy(name.to_owned()),
                None => Segment::Variable(name.to_owned()),
            },
            None => Segment::Literal(segment.to_owned()),
        })
        .collect::<Vec<_>>();
    // A greedy variable is allowed only last.
    if segments.iter().rev().skip(1).any(|segment| matches!(segment, Segment::Greedy(_))) {
        return None;
    }
    Some(RouteKey::Route { method: method.to_ascii_uppercase(), segments })
}

/// The function an integration URI names: a function ARN, or API Gateway's
/// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function arn>/invocations`.
/// Returns (region, function name, qualifier).
pub fn function_of_uri(uri: &str) -> Option<(String, String, Option<String>)> {
    let arn = match uri.split_once(":lambda:path/") {
        Some((_, path)) => path.split_once("/functions/")?.1.strip_suffix("/invocations")?,
        None => uri,
    };
    // arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", name] => Some(((*region).to_owned(), (*name).to_owned(), None)),
        ["arn", _, "lambda", region, _, "function", name, qualifier] => {
            Some(((*region).to_owned(), (*name).to_owned(), Some((*qualifier).to_owned())))
        }
        _ => None,
    }
}

/// The account id in an ARN (`arn:aws:lambda:us-east-1:123456789012:function:f`).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

pub(super) fn gateway_error<E>(
    operation: &str,
    error: aws_sdk_apigatewayv2::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> anyhow::Error
where
    E: aws_sdk_apigatewayv2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow!("{operation}: {}", crate::aws::error::explain(&error))
}

/// Collects every page of a paginated API Gateway listing.
macro_rules! all_pages {
    ($request:expr, $operation:expr) => {{
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = $request
                .clone()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|error| gateway_error($operation, error))?;
            items.extend(page.items().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        items
    }};
}

pub(super) async fn get_apis(clients: &RegionClients) -> Result<Vec<Api>> {
    let gateway = &clients.apigateway;
    let listed = all_pages!(gateway.get_apis(), "API Gateway GetApis");
    let mut apis = Vec::new();
    for api in listed {
        let Some(id) = api.api_id() else { continue };
        if api.protocol_type().is_some_and(|protocol| protocol.as_str() != "HTTP") {
            continue;
        }
        // An API deleted between the listing and these calls is skipped, not an error.
        let routes = match gateway.get_routes().api_id(id).all("API Gateway GetRoutes").await? {
            Some(routes) => routes,
            None => continue,
        };
        let Some(integrations) = gateway.get_integrations().api_id(id).all("API Gateway GetIntegrations").await? else {
            continue;
        };
        let Some(stages) = gateway.get_stages().api_id(id).all("API Gateway GetStages").await? else {
            continue;
        };
        apis.push(Api {
            id: id.to_owned(),
            name: api.name().unwrap_or_default().to_owned(),
            region: clients.region.clone(),
            tags: api.tags().map(|tags| tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            routes: routes
                .iter()
                .filter_map(|route: &aws_sdk_apigatewayv2::types::Route| {
                    let key = route.route_key()?;
                    let parsed = parse_route_key(key)?;
                    Some(Route {
                        id: route.route_id().unwrap_or_default().to_owned(),
                        key: key.to_owned(),
                        parsed,
                        integration_id: route
                            .target()
                            .and_then(|target| target.strip_prefix("integrations/"))
                            .map(str::to_owned),
                    })
                })
                .collect(),
            integrations: integrations
                .iter()
                .filter_map(|integration: &aws_sdk_apigatewayv2::types::Integration| {
                    let id = integration.integration_id()?.to_owned();
                    Some((
                        id.clone(),
                        Integration {
                            id,
                            kind: integration
                                .integration_type()
                                .map(|kind| kind.as_str().to_owned())
                                .unwrap_or_default(),
                            uri: integration.integration_uri().unwrap_or_default().to_owned(),
                            payload_format_version: integration.payload_format_version().unwrap_or("1.0").to_owned(),
                            timeout: Duration::from_millis(
                                integration
                                    .timeout_in_millis()
                                    .and_then(|ms| u64::try_from(ms).ok())
                                    .filter(|ms| *ms > 0)
                                    .unwrap_or(30_000),
                            ),
                        },
                    ))
                })
                .collect(),
            stages: stages
                .iter()
                .filter_map(|stage: &aws_sdk_apigatewayv2::types::Stage| stage.stage_name().map(str::to_owned))
                .collect(),
            throttling: stages
                .iter()
                .filter_map(|stage: &aws_sdk_apigatewayv2::types::Stage| {
                    let throttling = Throttling {
                        default: stage.default_route_settings().and_then(Limit::of),
                        routes: stage
                            .route_settings()
                            .into_iter()
                            .flatten()
                            .filter_map(|(key, settings)| Some((key.clone(), Limit::of(settings)?)))
                            .collect(),
                    };
                    Some((stage.stage_name()?.to_owned(), throttling))
                })
                .collect(),
            cors: api.cors_configuration().map(|cors| Cors {
                allow_origins: cors.allow_origins().to_vec(),
                allow_methods: cors.allow_methods().to_vec(),
                allow_headers: cors.allow_headers().to_vec(),
                expose_headers: cors.expose_headers().to_vec(),
                max_age: cors.max_age(),
                allow_credentials: cors.allow_credentials().unwrap_or(false),
            }),
        });
    }
    Ok(apis)
}

/// The three per-API listings, paged the same way.
pub(super) trait PagedRequest {
    type Item;
    async fn all(self, operation: &str) -> Result<Option<Vec<Self::Item>>>;
}

macro_rules! paged_request {
    ($builder:ty, $item:ty, $error:ty) => {
        impl PagedRequest for $builder {
            type Item = $item;
            async fn all(self, operation: &str) -> Result<Option<Vec<$item>>> {
                let mut items = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page = match self.clone().set_next_token(token.take()).send().await {
                        Ok(page) => page,
                        Err(error) if error.as_service_error().is_some_and(<$error>::is_not_found_exception) => {
                            return Ok(None)
                        }
                        Err(error) => return Err(gateway_error(operation, error)),
                    };
                    items.extend(page.items().iter().cloned());
                    match page.next_token() {
                        Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                        _ => return Ok(Some(items)),
                    }
                }
            }
        }
    };
}

paged_request!(
    aws_sdk_apigatewayv2::operation::get_routes::builders::GetRoutesFluentBuilder,
    aws_sdk_apigatewayv2::types::Route,
    aws_sdk_apigatewayv2::operation::get_routes::GetRoutesError
);
paged_request!(
    aws_sdk_apigatewayv2::operation::get_integrations::builders::GetIntegrationsFluentBuilder,
    aws_sdk_apigatewayv2::types::Integration,
    aws_sdk_apigatewayv2::operation::get_integrations::GetIntegrationsError
);
paged_request!(
    aws_sdk_apigatewayv2::operation::get_stages::builders::GetStagesFluentBuilder,
    aws_sdk_apigatewayv2::types::Stage,
    aws_sdk_apigatewayv2::operation::get_stages::GetStagesError
);
