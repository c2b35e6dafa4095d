//! AWS Signature Version 4 for the Kinesis requests, via `aws-sigv4`.
//!
//! The signer holds the function's static credentials (Lambda hands them to
//! extensions as environment variables) and returns only the headers to add:
//! `authorization`, `x-amz-date` and, with a session token, `x-amz-security-token`.
//! The token is part of the signed headers (`SessionTokenMode::Include`), which
//! every AWS JSON service, Kinesis included, accepts.
//!
//! Invariant: neither the secret access key nor the session token ever appears in
//! a `Debug` or `Display` output of this module's types.

// Not the extension's own `kinesis::Credentials`: the form `aws-sigv4` signs with.
use aws_credential_types::Credentials as SigningCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use std::fmt;
use std::time::SystemTime;

/// Signs requests for one service in one region with one set of credentials.
#[derive(Clone)]
pub struct Signer {
    credentials: SigningCredentials,
    region: String,
    service: String,
}

/// Why a request could not be signed (a malformed URL, in practice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign the request: {}", self.0)
    }
}

impl std::error::Error for SignError {}

impl Signer {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: &str,
        service: &str,
    ) -> Self {
        Self {
            credentials: SigningCredentials::new(
                access_key_id,
                secret_access_key,
                session_token.map(str::to_owned),
                None,
                "environment",
            ),
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    /// Signs a request and returns the headers to add to it (lowercase names).
    ///
    /// `url` must be the exact URL sent (scheme, host, port, path, query); `host` is
    /// derived from it and signed, so do not pass it in `headers`. Every header in
    /// `headers` is signed and must be sent unchanged.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("access_key_id", &self.credentials.access_key_id())
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.credentials.session_token().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

#[cfg(test)]
mod tests;
