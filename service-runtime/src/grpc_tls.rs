//! TLS between the platform's components (rustls through tonic), from
//! mounted PEM files:
//! - `GRPC_TLS_CERT_FILE` and `GRPC_TLS_KEY_FILE`: this component's
//!   certificate, which a service serves and every component presents
//!   when it calls over `https://`;
//! - `GRPC_TLS_CA_FILE`: the authority that signs the platform's
//!   certificates: callers check services against it, and services
//!   accept only callers presenting a certificate it signed (mutual TLS).
//!
//! None set: plaintext gRPC, for local runs and clusters whose mesh
//! encrypts. A service URL with `https://` needs the three.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

#[derive(Clone, Default)]
pub struct GrpcTls(Option<Pems>);

#[derive(Clone)]
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for GrpcTls {
    /// Whether TLS is on, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GrpcTls").field(&self.0.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is an https:// URL, but GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CA_FILE are not set")]
pub struct TlsUnconfigured(pub String);

impl GrpcTls {
    /// A certificate, its key and the platform's authority, as PEM.
    pub fn from_pem(cert: Vec<u8>, key: Vec<u8>, ca: Vec<u8>) -> Self {
        Self(Some(Pems { cert, key, ca }))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The authority's certificate (PEM), when TLS is on.
    pub fn authority(&self) -> Option<&[u8]> {
        self.0.as_ref().map(|pems| pems.ca.as_slice())
    }

    /// What a service serves with: its certificate, and only callers with
    /// one the authority signed.
    pub fn server(&self) -> Option<ServerTlsConfig> {
        self.0.as_ref().map(|pems| {
            ServerTlsConfig::new()
                .identity(Identity::from_pem(&pems.cert, &pems.key))
                .client_ca_root(Certificate::from_pem(&pems.ca))
        })
    }

    /// `endpoint`, speaking TLS with this component's certificate when its
    /// URL is `https://`.
    pub fn endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> {
        self.endpoint_with(endpoint, None)
    }

    /// [`Self::endpoint`] for a URL that names an address the host name
    /// `server_name` resolved to: the certificate must be for the name.
    pub fn endpoint_for(
        &self,
        endpoint: Endpoint,
        server_name: &str,
    ) -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> {
        self.endpoint_with(endpoint, Some(server_name))
    }

    fn endpoint_with(
        &self,
        endpoint: Endpoint,
        server_name: Option<&str>,
    ) -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> {
        if endpoint.uri().scheme_str() != Some("https") {
            return Ok(endpoint);
        }
        let pems = self
            .0
            .as_ref()
            .ok_or_else(|| TlsUnconfigured(endpoint.uri().to_string()))?;
        let mut client = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pems.ca))
            .identity(Identity::from_pem(&pems.cert, &pems.key));
        if let Some(name) = server_name {
            client = client.domain_name(name);
        }
        Ok(endpoint.tls_config(client)?)
    }
}
