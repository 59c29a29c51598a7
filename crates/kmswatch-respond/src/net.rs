//! The responders' network clients, built in one place: every REST client (Azure, GCP, their
//! token endpoints) and every AWS SDK client (KMS, CloudTrail, S3) comes from a [`Net`].
//!
//! In a release build a `Net` is always the default: the system's DNS and trust roots. With
//! the `test-hooks` feature (tests only, never enabled by the binary) a `Net` can send every
//! connection to one local test server whatever host it names ([`crate::testhook`]), which is
//! how the tests prove that no request ever goes to a host taken from log text.

use std::time::Duration;

/// How the responders reach the network.
#[derive(Debug, Clone, Default)]
pub struct Net {
    #[cfg(feature = "test-hooks")]
    pub(crate) redirect: Option<crate::testhook::Redirect>,
}

impl Net {
    /// A client for the REST responders: 30 s timeout, no redirects followed (a redirect would
    /// let a server choose where the bearer token goes next).
    pub(crate) fn http(&self) -> reqwest::Client {
        let b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        #[cfg(feature = "test-hooks")]
        let b = match &self.redirect {
            Some(r) => r.reqwest(b),
            None => b,
        };
        b.build().unwrap_or_default()
    }

    /// An AWS SDK config loader on this network.
    pub(crate) fn aws(&self, loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
        #[cfg(feature = "test-hooks")]
        if let Some(r) = &self.redirect {
            return loader.http_client(r.aws_http_client());
        }
        loader
    }
}
