//! HTTP clients for NHN's address registry (REST) and CPPA (REST v2).
//!
//! Both services sit behind HelseID. Authentication is a separate
//! [`AuthProvider`] that gives the headers for one request (method and URL
//! are passed because a DPoP proof is bound to them); [`BearerToken`] is the
//! simple form, HelseID client credentials with DPoP plugs in later as
//! another provider without touching the clients.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;

use crate::certificates::{parse_rest_certificates, PartyCertificates};
use crate::cppa::{parse_collaboration_document, CollaborationDocument};
use crate::party::parse_rest_json;
use crate::{check_cpa_id, CommunicationParty, Error, HerId, Registry, Result};

/// Largest answer read from a registry service.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Where the services are and how long to wait for them.
#[derive(Clone, Debug)]
pub struct HttpRegistryConfig {
    /// Address registry base URL, e.g. [`HttpRegistryConfig::TEST_ADDRESS_REGISTRY`].
    pub address_registry_url: String,
    /// CPPA base URL (without `/v2`), e.g. [`HttpRegistryConfig::TEST_CPPA`].
    pub cppa_url: String,
    /// Timeout of one request, connection included.
    pub timeout: Duration,
}

impl HttpRegistryConfig {
    /// NHN's test address registry.
    pub const TEST_ADDRESS_REGISTRY: &'static str = "https://cpapi.test.grunndata.nhn.no";
    /// NHN's production address registry.
    pub const PROD_ADDRESS_REGISTRY: &'static str = "https://cpapi.grunndata.nhn.no";
    /// NHN's test CPPA service.
    pub const TEST_CPPA: &'static str = "https://cppa.test.grunndata.nhn.no";
    /// NHN's production CPPA service.
    pub const PROD_CPPA: &'static str = "https://cppa.grunndata.nhn.no";

    /// NHN's test services with a 10 s timeout.
    pub fn nhn_test() -> Self {
        HttpRegistryConfig {
            address_registry_url: Self::TEST_ADDRESS_REGISTRY.into(),
            cppa_url: Self::TEST_CPPA.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Supplies the authentication headers of one request.
#[async_trait::async_trait]
pub trait AuthProvider: Send + Sync {
    /// Headers for a request with this method to this URL (a DPoP proof is
    /// bound to both).
    async fn headers(&self, method: &str, url: &str) -> Result<HeaderMap>;
}

/// A fixed bearer token (read from a file or an environment variable by the
/// caller, never from the command line).
pub struct BearerToken(String);

impl BearerToken {
    /// A provider sending `Authorization: Bearer <token>`.
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into().trim().to_owned())
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

#[async_trait::async_trait]
impl AuthProvider for BearerToken {
    async fn headers(&self, _method: &str, _url: &str) -> Result<HeaderMap> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.0)).map_err(|_| Error::Auth {
                reason: "token contains characters not allowed in a header".into(),
            })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Ok(headers)
    }
}

/// No authentication (local test servers).
#[derive(Debug, Default)]
pub struct NoAuth;

#[async_trait::async_trait]
impl AuthProvider for NoAuth {
    async fn headers(&self, _method: &str, _url: &str) -> Result<HeaderMap> {
        Ok(HeaderMap::new())
    }
}

/// The NHN registries over HTTP.
pub struct HttpRegistry {
    client: reqwest::Client,
    config: HttpRegistryConfig,
    auth: Arc<dyn AuthProvider>,
}

impl HttpRegistry {
    /// A client for the services in `config`, authenticating with `auth`.
    pub fn new(config: HttpRegistryConfig, auth: Arc<dyn AuthProvider>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| Error::Http {
                url: config.address_registry_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(HttpRegistry {
            client,
            config,
            auth,
        })
    }

    /// GET `url`; `Ok(None)` on 404.
    async fn get(&self, url: String) -> Result<Option<Vec<u8>>> {
        let headers = self.auth.headers("GET", &url).await?;
        let failed = |e: reqwest::Error, url: &str| {
            if e.is_timeout() {
                Error::Timeout {
                    url: url.to_owned(),
                }
            } else {
                Error::Http {
                    url: url.to_owned(),
                    reason: e.to_string(),
                }
            }
        };
        let mut response = self
            .client
            .get(&url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| failed(e, &url))?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::Auth {
                    reason: format!("{url} answered {}", response.status()),
                })
            }
            status if !status.is_success() => {
                return Err(Error::Http {
                    url,
                    reason: format!("status {status}"),
                })
            }
            _ => {}
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e, &url))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Error::TooLarge {
                    what: "registry response",
                    size: body.len() + chunk.len(),
                    limit: MAX_RESPONSE_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    async fn get_document(&self, url: String) -> Result<Option<Arc<CollaborationDocument>>> {
        let Some(bytes) = self.get(url).await? else {
            return Ok(None);
        };
        match parse_collaboration_document(&bytes) {
            Ok(document) => Ok(Some(Arc::new(document))),
            // NHN answers "no such profile" with an `i:nil` document.
            Err(Error::EmptyDocument { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn address_url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.config.address_registry_url.trim_end_matches('/')
        )
    }

    fn cppa_url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.config.cppa_url.trim_end_matches('/'))
    }
}

#[async_trait::async_trait]
impl Registry for HttpRegistry {
    async fn communication_party(&self, her_id: HerId) -> Result<CommunicationParty> {
        let url = self.address_url(&format!("/api/v1/communicationparty/{her_id}"));
        let bytes = self.get(url).await?.ok_or_else(|| Error::NotFound {
            what: "communication party",
            key: her_id.to_string(),
        })?;
        parse_rest_json(&bytes)
    }

    async fn certificates(&self, her_id: HerId) -> Result<PartyCertificates> {
        let url = self.address_url(&format!(
            "/api/v1/certificate/{her_id}?includeHistoric=true"
        ));
        let bytes = self.get(url).await?.ok_or_else(|| Error::NotFound {
            what: "certificates",
            key: her_id.to_string(),
        })?;
        parse_rest_certificates(&bytes, &her_id.to_string())
    }

    async fn cpp(&self, her_id: HerId) -> Result<Option<Arc<CollaborationDocument>>> {
        self.get_document(self.cppa_url(&format!("Profiles/{her_id}")))
            .await
    }

    async fn cpa_by_id(&self, cpa_id: &str) -> Result<Option<Arc<CollaborationDocument>>> {
        let cpa_id = check_cpa_id(cpa_id)?;
        self.get_document(self.cppa_url(&format!("Agreements/{cpa_id}")))
            .await
    }

    async fn cpa_for(
        &self,
        ours: HerId,
        theirs: HerId,
    ) -> Result<Option<Arc<CollaborationDocument>>> {
        self.get_document(self.cppa_url(&format!("Agreements/HerIds/{ours}/{theirs}")))
            .await
    }
}
