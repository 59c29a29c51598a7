//! Test-only (feature `test-hooks`; the binary never enables it): redirect every connection the
//! responders open to one local test server, whatever host name it was meant for, and trust
//! that server's CA. Not a configuration knob: it exists only in test builds.
//!
//! - REST clients (reqwest): a DNS resolver that answers every name with the server's address
//!   (the TLS handshake still carries the real name as SNI, the request its `Host`).
//! - AWS SDK clients: an HTTP proxy at the server's address (the SDK's resolver hook cannot
//!   carry a port), so every request arrives as `CONNECT host:443` naming the real host.

use std::net::SocketAddr;
use std::sync::Arc;

/// Where every connection goes, and the CA to trust there.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// The test server.
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server's certificate (the only root trusted).
    pub ca_pem: String,
}

struct AllTo(SocketAddr);

impl reqwest::dns::Resolve for AllTo {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let a = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(a)) as reqwest::dns::Addrs) })
    }
}

impl Redirect {
    pub(crate) fn reqwest(&self, b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let b = b.no_proxy().dns_resolver(Arc::new(AllTo(self.addr)));
        match reqwest::Certificate::from_pem(self.ca_pem.as_bytes()) {
            Ok(c) => b.tls_certs_only([c]),
            Err(_) => b,
        }
    }

    pub(crate) fn aws_http_client(&self) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
        use aws_smithy_http_client::tls::{
            self, rustls_provider::CryptoMode, TlsContext, TrustStore,
        };
        let proxy = format!("http://{}", self.addr);
        let pem = self.ca_pem.clone();
        aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, components| {
                let mut b = aws_smithy_http_client::Connector::builder();
                b.set_connector_settings(settings.cloned());
                if let Some(c) = components {
                    b.set_sleep_impl(c.sleep_impl());
                }
                if let Ok(p) = aws_smithy_http_client::proxy::ProxyConfig::all(proxy.as_str()) {
                    b = b.proxy_config(p);
                }
                let ctx = TlsContext::builder()
                    .with_trust_store(
                        TrustStore::empty()
                            .with_native_roots(false)
                            .with_pem_certificate(pem.clone().into_bytes()),
                    )
                    .build()
                    .unwrap_or_default();
                b.tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(ctx)
                    .build()
            },
        )
    }
}
