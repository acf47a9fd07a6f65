//! What an HTTP sink's configuration shares: the endpoint keys (`url`, `ca_file`, `timeout`,
//! `follow_redirects`), the [`Target`] built from them, and [`Http`], the options type of every
//! HTTP kind (the endpoint plus the kind's own keys).

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::redirect::Policy;
use reqwest::Client;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_aux::serde_introspection::serde_introspect;

use super::http::Target;
use super::redact;
use super::{Build, Check, Options, Sink, SinkError, SinkSettings};

/// Redirects a sink follows when `follow_redirects = true`.
const MAX_REDIRECTS: usize = 5;

/// The keys every HTTP sink takes.
#[derive(Default, Deserialize)]
pub struct Endpoint {
    /// Endpoint URL: literal, `env:NAME` or `file:PATH`. A secret, whatever the kind: webhook
    /// URLs carry tokens in their path or query; messages show only its scheme and host.
    pub url: Option<String>,
    /// Extra CA certificates (PEM) to trust for an https `url` (private GitLab, proxies).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout for this sink. Default: `[delivery] timeout`.
    pub timeout: Option<String>,
    /// Follow HTTP redirects (at most 5). Default `false`: a 3xx answer is a permanent failure
    /// naming where it pointed, so a compromised or misconfigured endpoint cannot send alerts
    /// (and their bearer tokens) elsewhere.
    pub follow_redirects: Option<bool>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_deref().map(redact::url_text))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("follow_redirects", &self.follow_redirects)
            .finish()
    }
}

impl Endpoint {
    /// Checks the keys: `url` (a secret, resolved in place) is http(s), `ca_file` exists,
    /// `timeout` is a positive duration.
    fn check(&mut self, check: &mut Check) {
        check.secret("url", &mut self.url);
        if let Some(url) = &self.url {
            if let Err(problem) = check_url(url) {
                check.problem(format!("`url`: {problem}"));
            }
        }
        if let Some(ca) = &self.ca_file {
            if let Err(e) = std::fs::metadata(ca) {
                check.problem(format!("ca_file {}: {e}", ca.display()));
            }
        }
        if let Some(text) = &self.timeout {
            if !humantime::parse_duration(text).is_ok_and(|d| !d.is_zero()) {
                check.problem(format!("timeout {text:?} is not a positive duration"));
            }
        }
    }

    /// The checked `url` (or `default` when it is not set), parsed.
    pub fn url(&self, settings: &SinkSettings, default: &str) -> Result<reqwest::Url, SinkError> {
        let url = self.url.as_deref().unwrap_or(default);
        reqwest::Url::parse(url).map_err(|e| settings.error(format!("`url`: {e}")))
    }

    /// Where the sink posts: `url` (already parsed, see [`Endpoint::url`]), the
    /// [`Endpoint::client`], and the sink's secrets to keep out of its messages.
    pub fn target(&self, settings: &SinkSettings, url: reqwest::Url) -> Result<Target, SinkError> {
        Ok(Target::new(
            url,
            self.client(settings)?,
            settings.secrets.clone(),
        ))
    }

    /// An HTTP client for the sink: its timeout (`timeout`, else `[delivery] timeout`), extra CA
    /// certificates (`ca_file`), redirects followed only when `follow_redirects`, a Kestrel
    /// user agent.
    pub fn client(&self, settings: &SinkSettings) -> Result<Client, SinkError> {
        let timeout = self
            .timeout
            .as_deref()
            .and_then(|text| humantime::parse_duration(text).ok())
            .unwrap_or(settings.default_timeout);
        let mut builder = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("kestrel-collector/", env!("CARGO_PKG_VERSION")))
            .redirect(if self.follow_redirects == Some(true) {
                Policy::limited(MAX_REDIRECTS)
            } else {
                Policy::none()
            })
            .use_rustls_tls();
        if let Some(path) = &self.ca_file {
            let fail =
                |e: &dyn std::fmt::Display| settings.error(format!("{}: {e}", path.display()));
            let pem = std::fs::read(path).map_err(|e| fail(&e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(&e))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| settings.error(format!("HTTP client: {e}")))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// An HTTP kind's own keys, besides the [`Endpoint`]'s.
pub trait HttpKind: DeserializeOwned + Send + Sync + 'static {
    /// Checks the kind's own keys, and whether it needs `url`; secrets are resolved in place.
    fn check(&mut self, endpoint: &Endpoint, check: &mut Check);

    /// Builds the sink from the checked endpoint and keys.
    fn build(
        &self,
        endpoint: &Endpoint,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, SinkError>;
}

/// The options of an HTTP kind `T`: the endpoint keys and the kind's own, from one table.
pub struct Http<T> {
    /// `url`, `ca_file`, `timeout`.
    pub endpoint: Endpoint,
    /// The kind's own keys.
    pub own: T,
}

impl<'de, T: HttpKind> Deserialize<'de> for Http<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut own = toml::Table::deserialize(deserializer)?;
        let endpoint: toml::Table = serde_introspect::<Endpoint>()
            .iter()
            .filter_map(|&key| own.remove(key).map(|value| (key.to_owned(), value)))
            .collect();
        Ok(Http {
            endpoint: Endpoint::deserialize(toml::Value::Table(endpoint))
                .map_err(D::Error::custom)?,
            own: T::deserialize(toml::Value::Table(own)).map_err(D::Error::custom)?,
        })
    }
}

impl<T: HttpKind> Options for Http<T> {
    fn keys() -> Vec<&'static str> {
        let mut keys = serde_introspect::<Endpoint>().to_vec();
        keys.extend(serde_introspect::<T>());
        keys
    }

    fn check(&mut self, check: &mut Check) {
        self.endpoint.check(check);
        self.own.check(&self.endpoint, check);
    }
}

impl<T: HttpKind> Build for Http<T> {
    fn build(&self, settings: &SinkSettings) -> Result<Arc<dyn Sink>, SinkError> {
        self.own.build(&self.endpoint, settings)
    }
}
