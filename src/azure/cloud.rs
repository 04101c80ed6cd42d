//! Azure clouds, their endpoints, and the operator-wide Azure configuration.
//!
//! Everything here is parsed once at start from the command line (see `azureml-attach run
//! --help`). Endpoint resolution is a pure function so the rules (https only, a custom cloud
//! names every endpoint, the ARM scope is `<audience>/.default`) are unit-tested without I/O.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use super::throttle::ThrottleConfig;

/// Default ARM api-version for `Microsoft.MachineLearningServices` computes: the newest stable.
pub const DEFAULT_API_VERSION: &str = "2026-07-01";

/// A named Azure cloud, or `Custom` (Azure Stack, private clouds, the emulator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Cloud {
    /// Azure public cloud (`management.azure.com`).
    #[default]
    #[value(name = "AzurePublic", alias = "AzureCloud")]
    AzurePublic,
    /// Azure operated by 21Vianet (`management.chinacloudapi.cn`).
    #[value(name = "AzureChina", alias = "AzureChinaCloud")]
    AzureChina,
    /// Azure US Government (`management.usgovcloudapi.net`).
    #[value(name = "AzureUSGovernment", alias = "AzureUSGovernmentCloud")]
    AzureUSGovernment,
    /// Custom endpoints; `--arm-endpoint` and `--authority-host` are required.
    #[value(name = "Custom")]
    Custom,
}

/// Well-known endpoints of a named cloud (from `azure_core`'s constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WellKnownEndpoints {
    /// Azure Resource Manager base URL.
    pub arm_endpoint: &'static str,
    /// Entra ID audience of ARM (the scope is this plus `/.default`).
    pub arm_audience: &'static str,
    /// Entra ID authority host.
    pub authority_host: &'static str,
}

impl Cloud {
    /// Every cloud, in the order the CLI documents them.
    pub const ALL: [Cloud; 4] = [
        Cloud::AzurePublic,
        Cloud::AzureChina,
        Cloud::AzureUSGovernment,
        Cloud::Custom,
    ];

    /// The canonical name used on the command line and in `MLWorkspace.spec.cloud`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::AzurePublic => "AzurePublic",
            Cloud::AzureChina => "AzureChina",
            Cloud::AzureUSGovernment => "AzureUSGovernment",
            Cloud::Custom => "Custom",
        }
    }

    /// The endpoints of a named cloud; `None` for [`Cloud::Custom`].
    pub fn well_known(self) -> Option<WellKnownEndpoints> {
        match self {
            Cloud::AzurePublic => Some(WellKnownEndpoints {
                arm_endpoint: "https://management.azure.com",
                arm_audience: "https://management.azure.com",
                authority_host: "https://login.microsoftonline.com",
            }),
            Cloud::AzureChina => Some(WellKnownEndpoints {
                arm_endpoint: "https://management.chinacloudapi.cn",
                arm_audience: "https://management.chinacloudapi.cn",
                authority_host: "https://login.chinacloudapi.cn",
            }),
            Cloud::AzureUSGovernment => Some(WellKnownEndpoints {
                arm_endpoint: "https://management.usgovcloudapi.net",
                arm_audience: "https://management.usgovcloudapi.net",
                authority_host: "https://login.microsoftonline.us",
            }),
            Cloud::Custom => None,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cloud {
    type Err = ConfigError;

    /// Case-insensitive; also accepts the Azure CLI names (`AzureCloud`, `AzureChinaCloud`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "azurepublic" | "azurecloud" | "public" => Ok(Cloud::AzurePublic),
            "azurechina" | "azurechinacloud" | "china" => Ok(Cloud::AzureChina),
            "azureusgovernment" | "azureusgovernmentcloud" | "usgovernment" => {
                Ok(Cloud::AzureUSGovernment)
            }
            "custom" => Ok(Cloud::Custom),
            _ => Err(ConfigError::UnknownCloud(s.to_string())),
        }
    }
}

/// The three endpoints every Azure call needs, resolved and validated.
///
/// `Hash + Eq` so the controller can key credential and client caches by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloudEndpoints {
    /// ARM base URL, without a trailing slash in its path (`https://management.azure.com`).
    pub arm_endpoint: Url,
    /// Entra ID audience of ARM.
    pub arm_audience: String,
    /// Entra ID authority host (`https://login.microsoftonline.com`).
    pub authority_host: Url,
}

/// Explicit endpoint overrides (CLI flags, or custom endpoints in an `MLWorkspace`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointOverrides {
    /// Overrides the cloud's ARM endpoint.
    pub arm_endpoint: Option<String>,
    /// Overrides the ARM audience; defaults to the ARM endpoint (custom) or the cloud's audience.
    pub arm_audience: Option<String>,
    /// Overrides the Entra ID authority host.
    pub authority_host: Option<String>,
}

impl CloudEndpoints {
    /// Resolves the endpoints of `cloud`, applying `overrides`.
    ///
    /// Rules: every URL must be `https` (azure_identity refuses anything else, and a bearer
    /// token must never travel in clear text); `Custom` requires an ARM endpoint and an
    /// authority host; the audience defaults to the cloud's ARM audience, or for a custom
    /// ARM endpoint to that endpoint itself (what Azure Stack and the emulator accept).
    pub fn resolve(cloud: Cloud, overrides: &EndpointOverrides) -> Result<Self, ConfigError> {
        let known = cloud.well_known();
        let arm_raw = match (&overrides.arm_endpoint, known) {
            (Some(arm), _) => arm.as_str(),
            (None, Some(k)) => k.arm_endpoint,
            (None, None) => return Err(ConfigError::MissingEndpoint("arm endpoint")),
        };
        let authority_raw = match (&overrides.authority_host, known) {
            (Some(host), _) => host.as_str(),
            (None, Some(k)) => k.authority_host,
            (None, None) => return Err(ConfigError::MissingEndpoint("authority host")),
        };
        let arm_endpoint = parse_https_base("arm endpoint", arm_raw)?;
        let authority_host = parse_https_base("authority host", authority_raw)?;
        let arm_audience = match (&overrides.arm_audience, known) {
            (Some(aud), _) => aud.trim().trim_end_matches('/').to_string(),
            // A named cloud with a custom ARM endpoint (a proxy) still uses the cloud's audience.
            (None, Some(k)) => k.arm_audience.to_string(),
            (None, None) => origin_string(&arm_endpoint),
        };
        if arm_audience.is_empty() {
            return Err(ConfigError::MissingEndpoint("arm audience"));
        }
        Ok(Self {
            arm_endpoint,
            arm_audience,
            authority_host,
        })
    }

    /// The OAuth scope for ARM tokens: `<audience>/.default`.
    pub fn arm_scope(&self) -> String {
        arm_scope(&self.arm_audience)
    }

    /// The authority host as azure_identity wants it (no trailing slash).
    pub fn authority_host_str(&self) -> String {
        origin_string(&self.authority_host)
    }
}

/// `<audience>/.default`, tolerating a trailing slash on the audience.
pub fn arm_scope(audience: &str) -> String {
    format!("{}/.default", audience.trim_end_matches('/'))
}

/// The URL without its trailing slash (`https://host[:port][/path]`).
fn origin_string(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// Parses an https base URL; refuses other schemes, query strings and fragments.
fn parse_https_base(what: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|source| ConfigError::InvalidUrl {
        what,
        value: raw.to_string(),
        source,
    })?;
    if url.scheme() != "https" {
        return Err(ConfigError::NotHttps {
            what,
            value: raw.to_string(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(ConfigError::NotABaseUrl {
            what,
            value: raw.to_string(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::NotABaseUrl {
            what,
            value: "<url with credentials>".to_string(),
        });
    }
    Ok(url)
}

/// What the command line gives the Azure layer (one field per flag).
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    /// `--cloud`.
    pub cloud: Cloud,
    /// `--arm-endpoint`, `--arm-audience`, `--authority-host`.
    pub overrides: EndpointOverrides,
    /// `--extra-ca-file`: a PEM bundle trusted in addition to the system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// `--api-version`; `None` means [`DEFAULT_API_VERSION`].
    pub api_version: Option<String>,
    /// Client-side ARM budget.
    pub throttle: ThrottleConfig,
}

/// The operator-wide Azure configuration: endpoints, trust, api-version and throttling.
///
/// Built once at start by [`AzureConfig::load`]; cheap to clone (the HTTP client is shared).
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// The cloud named on the command line.
    pub cloud: Cloud,
    /// The resolved default endpoints.
    pub endpoints: CloudEndpoints,
    /// The `api-version` sent to the computes API.
    pub api_version: String,
    /// Client-side ARM budget.
    pub throttle: ThrottleConfig,
    /// The extra CA file, kept for diagnostics.
    pub extra_ca_file: Option<PathBuf>,
    /// Extra trusted roots parsed from `extra_ca_file`.
    extra_roots: Vec<reqwest::Certificate>,
    /// One HTTP client (one connection pool, one TLS config) for ARM and Entra ID.
    http: reqwest::Client,
}

impl AzureConfig {
    /// Validates the options, reads the extra CA bundle and builds the shared HTTP client.
    pub fn load(options: AzureOptions) -> Result<Self, ConfigError> {
        let extra_pem = match &options.extra_ca_file {
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        Self::from_parts(options, extra_pem.as_deref())
    }

    /// Like [`AzureConfig::load`] with the CA bundle given as PEM bytes (tests, in-memory CAs).
    pub fn from_parts(
        options: AzureOptions,
        extra_ca_pem: Option<&[u8]>,
    ) -> Result<Self, ConfigError> {
        let endpoints = CloudEndpoints::resolve(options.cloud, &options.overrides)?;
        let api_version = validate_api_version(options.api_version.as_deref())?;
        options.throttle.validate()?;
        let extra_roots = match extra_ca_pem {
            Some(pem) => parse_ca_bundle(pem)?,
            None => Vec::new(),
        };
        let http = build_http_client(&extra_roots)?;
        Ok(Self {
            cloud: options.cloud,
            endpoints,
            api_version,
            throttle: options.throttle,
            extra_ca_file: options.extra_ca_file,
            extra_roots,
            http,
        })
    }

    /// The same configuration for other endpoints (an `MLWorkspace` in another cloud);
    /// trust, api-version, throttling and the HTTP client are shared.
    pub fn with_endpoints(&self, cloud: Cloud, endpoints: CloudEndpoints) -> Self {
        Self {
            cloud,
            endpoints,
            ..self.clone()
        }
    }

    /// The shared HTTP client (trusts the system roots plus the extra CA bundle).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// How many extra roots were loaded (for the startup log line).
    pub fn extra_root_count(&self) -> usize {
        self.extra_roots.len()
    }
}

/// Request timeouts: ARM answers PUT/DELETE quickly (the work is asynchronous), so a long
/// request means trouble; a worker should not hang on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the reqwest client used for both ARM and Entra ID.
///
/// Installs the ring provider first (idempotent): reqwest is built without a default provider
/// so that aws-lc-rs is never linked, and it panics when no process default exists.
fn build_http_client(extra_roots: &[reqwest::Certificate]) -> Result<reqwest::Client, ConfigError> {
    super::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // ARM does not redirect; following one could send the bearer token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("azureml-attach/", env!("CARGO_PKG_VERSION")));
    if !extra_roots.is_empty() {
        builder = builder.tls_certs_merge(extra_roots.iter().cloned());
    }
    builder
        .build()
        .map_err(|e| ConfigError::HttpClient(e.without_url()))
}

fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::ReadCaFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a PEM bundle; an empty bundle is an error (a typo'd file should not silently
/// leave the operator unable to reach a private cloud).
fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| ConfigError::InvalidCaBundle(e.without_url().to_string()))?;
    if certs.is_empty() {
        return Err(ConfigError::InvalidCaBundle(
            "no PEM certificate found".to_string(),
        ));
    }
    Ok(certs)
}

/// `YYYY-MM-DD` with an optional `-preview` style suffix.
fn validate_api_version(raw: Option<&str>) -> Result<String, ConfigError> {
    let version = raw.map(str::trim).unwrap_or(DEFAULT_API_VERSION);
    let bytes = version.as_bytes();
    let date_ok = bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    let suffix_ok = || {
        bytes.len() == 10
            || (bytes[10] == b'-'
                && bytes.len() > 11
                && bytes[11..].iter().all(|b| b.is_ascii_alphanumeric()))
    };
    if date_ok && suffix_ok() {
        Ok(version.to_string())
    } else {
        Err(ConfigError::InvalidApiVersion(version.to_string()))
    }
}

/// Invalid Azure configuration; reported at start, before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--cloud` names no known cloud.
    #[error("unknown cloud {0:?}: expected AzurePublic, AzureChina, AzureUSGovernment or Custom")]
    UnknownCloud(String),
    /// A custom cloud without one of its endpoints.
    #[error("cloud Custom requires an explicit {0}")]
    MissingEndpoint(&'static str),
    /// An endpoint that is not a URL.
    #[error("{what} {value:?} is not a valid URL")]
    InvalidUrl {
        /// Which endpoint.
        what: &'static str,
        /// The value given.
        value: String,
        /// Parse error.
        #[source]
        source: url::ParseError,
    },
    /// An endpoint that is not https.
    #[error("{what} {value:?} must use https (bearer tokens never travel in clear text)")]
    NotHttps {
        /// Which endpoint.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// An endpoint with a query, fragment, credentials or no host.
    #[error("{what} {value:?} must be a plain base URL (scheme, host, optional port and path)")]
    NotABaseUrl {
        /// Which endpoint.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The api-version does not look like one.
    #[error("api-version {0:?} is not of the form YYYY-MM-DD[-preview]")]
    InvalidApiVersion(String),
    /// The extra CA file could not be read.
    #[error("cannot read extra CA file {path}")]
    ReadCaFile {
        /// The file.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The extra CA file holds no usable certificate.
    #[error("invalid extra CA bundle: {0}")]
    InvalidCaBundle(String),
    /// The throttle settings are unusable.
    #[error("invalid ARM throttle setting: {0}")]
    InvalidThrottle(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(arm: &str, authority: &str) -> EndpointOverrides {
        EndpointOverrides {
            arm_endpoint: Some(arm.to_string()),
            arm_audience: None,
            authority_host: Some(authority.to_string()),
        }
    }

    #[test]
    fn named_clouds_resolve_to_their_endpoints() {
        let public =
            CloudEndpoints::resolve(Cloud::AzurePublic, &EndpointOverrides::default()).unwrap();
        assert_eq!(
            public.arm_endpoint.as_str(),
            "https://management.azure.com/"
        );
        assert_eq!(public.arm_scope(), "https://management.azure.com/.default");
        assert_eq!(
            public.authority_host_str(),
            "https://login.microsoftonline.com"
        );

        let china =
            CloudEndpoints::resolve(Cloud::AzureChina, &EndpointOverrides::default()).unwrap();
        assert_eq!(
            china.arm_scope(),
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(china.authority_host_str(), "https://login.chinacloudapi.cn");

        let gov = CloudEndpoints::resolve(Cloud::AzureUSGovernment, &EndpointOverrides::default())
            .unwrap();
        assert_eq!(
            gov.arm_endpoint.as_str(),
            "https://management.usgovcloudapi.net/"
        );
        assert_eq!(gov.authority_host_str(), "https://login.microsoftonline.us");
    }

    #[test]
    fn custom_cloud_requires_endpoints() {
        let err =
            CloudEndpoints::resolve(Cloud::Custom, &EndpointOverrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingEndpoint("arm endpoint")));
        let only_arm = EndpointOverrides {
            arm_endpoint: Some("https://127.0.0.1:8443".into()),
            ..Default::default()
        };
        let err = CloudEndpoints::resolve(Cloud::Custom, &only_arm).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::MissingEndpoint("authority host")
        ));
    }

    #[test]
    fn custom_audience_defaults_to_the_arm_endpoint() {
        let ep = CloudEndpoints::resolve(
            Cloud::Custom,
            &custom("https://127.0.0.1:8443/", "https://127.0.0.1:8443"),
        )
        .unwrap();
        assert_eq!(ep.arm_audience, "https://127.0.0.1:8443");
        assert_eq!(ep.arm_scope(), "https://127.0.0.1:8443/.default");
        assert_eq!(ep.authority_host_str(), "https://127.0.0.1:8443");
    }

    #[test]
    fn explicit_audience_wins_and_named_cloud_keeps_its_audience_behind_a_proxy() {
        let mut o = custom("https://arm.proxy.local", "https://login.proxy.local");
        o.arm_audience = Some("https://management.azure.com/".into());
        let ep = CloudEndpoints::resolve(Cloud::Custom, &o).unwrap();
        assert_eq!(ep.arm_scope(), "https://management.azure.com/.default");

        let proxy = EndpointOverrides {
            arm_endpoint: Some("https://arm.proxy.local".into()),
            ..Default::default()
        };
        let ep = CloudEndpoints::resolve(Cloud::AzurePublic, &proxy).unwrap();
        assert_eq!(ep.arm_endpoint.host_str(), Some("arm.proxy.local"));
        assert_eq!(ep.arm_audience, "https://management.azure.com");
    }

    #[test]
    fn non_https_endpoints_are_refused() {
        let err = CloudEndpoints::resolve(
            Cloud::Custom,
            &custom("http://127.0.0.1:8080", "https://login.local"),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotHttps {
                what: "arm endpoint",
                ..
            }
        ));
        let err = CloudEndpoints::resolve(
            Cloud::Custom,
            &custom("https://arm.local", "http://login.local"),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotHttps {
                what: "authority host",
                ..
            }
        ));
        let err = CloudEndpoints::resolve(
            Cloud::Custom,
            &custom("https://arm.local?x=1", "https://login.local"),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::NotABaseUrl { .. }));
        let err =
            CloudEndpoints::resolve(Cloud::Custom, &custom("not a url", "https://l")).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidUrl { .. }));
    }

    #[test]
    fn cloud_names_parse_case_insensitively() {
        assert_eq!("azurepublic".parse::<Cloud>().unwrap(), Cloud::AzurePublic);
        assert_eq!(
            "AzureChinaCloud".parse::<Cloud>().unwrap(),
            Cloud::AzureChina
        );
        assert_eq!(
            "AzureUSGovernment".parse::<Cloud>().unwrap(),
            Cloud::AzureUSGovernment
        );
        assert_eq!("Custom".parse::<Cloud>().unwrap(), Cloud::Custom);
        assert!("Mars".parse::<Cloud>().is_err());
        for cloud in Cloud::ALL {
            assert_eq!(cloud.to_string().parse::<Cloud>().unwrap(), cloud);
        }
    }

    #[test]
    fn api_versions_are_validated() {
        assert_eq!(validate_api_version(None).unwrap(), DEFAULT_API_VERSION);
        assert_eq!(
            validate_api_version(Some("2025-12-01")).unwrap(),
            "2025-12-01"
        );
        assert_eq!(
            validate_api_version(Some("2022-10-01-preview")).unwrap(),
            "2022-10-01-preview"
        );
        for bad in [
            "",
            "2025-12",
            "2025/12/01",
            "2025-12-01-",
            "latest",
            "2025-12-01-pre view",
        ] {
            assert!(validate_api_version(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_loads_and_rejects_bad_ca_bundles() {
        let options = AzureOptions {
            cloud: Cloud::Custom,
            overrides: custom("https://127.0.0.1:1", "https://127.0.0.1:1"),
            ..Default::default()
        };
        let err = AzureConfig::from_parts(options.clone(), Some(b"not a pem")).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidCaBundle(_)));
        let config = AzureConfig::from_parts(options, None).unwrap();
        assert_eq!(config.api_version, DEFAULT_API_VERSION);
        assert_eq!(config.extra_root_count(), 0);

        let missing = AzureOptions {
            extra_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..Default::default()
        };
        assert!(matches!(
            AzureConfig::load(missing).unwrap_err(),
            ConfigError::ReadCaFile { .. }
        ));
    }
}
