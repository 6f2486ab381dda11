//! Where and how to connect: the broker URL parsed once into an
//! [`Endpoint`] (host, port, TLS or not, SASL user and password, the
//! exchange in its path), and the TLS client configuration for `amqps://`
//! (the system roots plus an extra CA file).

use std::path::Path;
use std::sync::Arc;

use helsemelding_transport::Error;

/// Where and how to connect, parsed from the URL once.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The URL's path: RabbitMQ's exchange the senders target.
    pub exchange: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    // host:port only: this is what errors and logs name, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    /// `amqp://[user[:password]@]host[:port][/exchange]` or `amqps://…`;
    /// `password_override` wins over the URL's password.
    pub fn parse(raw: &str, password_override: Option<&str>) -> Result<Endpoint, Error> {
        let url = url::Url::parse(raw).map_err(|e| Error::Config(format!("broker URL: {e}")))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => {
                return Err(Error::Config(format!(
                    "broker URL scheme {other:?}: use amqp or amqps"
                )))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| Error::Config("broker URL has no host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = Some(decode(url.username())).filter(|u| !u.is_empty());
        let password = password_override
            .map(str::to_owned)
            .or_else(|| url.password().map(decode));
        let exchange = Some(decode(url.path().trim_matches('/'))).filter(|p| !p.is_empty());
        Ok(Endpoint {
            port: url.port().unwrap_or(if tls { 5671 } else { 5672 }),
            host,
            tls,
            user,
            password,
            exchange,
        })
    }

    /// What errors call it: `host:port`.
    pub fn name(&self) -> String {
        format!("{self:?}")
    }
}

/// A TLS client trusting the system roots plus the optional extra CA.
pub(crate) fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping a system root certificate");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let ca_error = |reason: String| Error::CaFile {
            file: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.map_err(|e| ca_error(e.to_string()))?)
                .map_err(|e| ca_error(e.to_string()))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("no PEM certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_are_decoded_and_the_separate_password_wins() {
        let e = Endpoint::parse(
            "amqps://my%40user:url%3Apass@broker.example/Ex%20Change",
            None,
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("broker.example", 5671, true)
        );
        assert_eq!(e.user.as_deref(), Some("my@user"));
        assert_eq!(e.password.as_deref(), Some("url:pass"));
        assert_eq!(e.exchange.as_deref(), Some("Ex Change"));
        let e = Endpoint::parse("amqp://u:p@h:5682", Some("from-secret")).unwrap();
        assert_eq!(
            (e.port, e.password.as_deref(), e.exchange.as_deref()),
            (5682, Some("from-secret"), None)
        );
        assert!(!format!("{e:?}").contains("from-secret"));
        assert_eq!(e.name(), "h:5682");
        let e = Endpoint::parse("amqp://[::1]/", None).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.exchange), ("::1", 5672, None));
    }

    #[test]
    fn bad_urls_and_ca_files_are_configuration_errors() {
        assert!(matches!(
            Endpoint::parse("http://h", None),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Endpoint::parse("not a url", None),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            tls_connector(Some(Path::new("/nonexistent/ca.pem"))),
            Err(Error::CaFile { .. })
        ));
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), b"no certificate here").unwrap();
        match tls_connector(Some(not_pem.path())) {
            Err(Error::CaFile { reason, .. }) => assert!(reason.contains("no PEM"), "{reason}"),
            other => panic!("expected CaFile, got {:?}", other.err()),
        }
    }
}
