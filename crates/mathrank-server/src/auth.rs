//! The bearer token both protocols check.

use subtle::ConstantTimeEq;

use crate::error::ServeError;

/// A non-empty shared secret that callers send as `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// Refuses an empty or blank token, which would otherwise let every call in.
    pub fn new(token: impl Into<String>) -> Result<Self, ServeError> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(ServeError::EmptyToken);
        }
        Ok(Self(token))
    }

    /// Whether two tokens are the same secret.
    pub fn same_secret(&self, other: &BearerToken) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }

    /// Whether an `authorization` header value carries this token. The scheme is matched
    /// case-insensitively (RFC 9110); the token itself in constant time.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(header) = header else { return false };
        let Some((scheme, given)) = header.trim().split_once(' ') else { return false };
        scheme.eq_ignore_ascii_case("bearer") && bool::from(given.trim().as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// The message of a refused call.
pub const UNAUTHENTICATED: &str = "missing or wrong bearer token: send `authorization: Bearer <token>`";

/// What a server without `--write-token` answers on the write routes and methods.
pub const WRITES_OFF: &str = "the write API is off: start mathrank serve with --write-token TOKEN (or MATHRANK_WRITE_TOKEN) to turn it on; writes then need `authorization: Bearer TOKEN`";

/// What a search token gets on the write routes.
pub const SEARCH_TOKEN_CANNOT_WRITE: &str =
    "this token may search but not write: writes need the server's write token (--write-token)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tokens_are_refused() {
        assert!(matches!(BearerToken::new(""), Err(ServeError::EmptyToken)));
        assert!(matches!(BearerToken::new(" \t"), Err(ServeError::EmptyToken)));
    }

    #[test]
    fn scheme_is_case_insensitive_and_token_exact() {
        let token = BearerToken::new("s3cret").unwrap();
        assert!(token.accepts(Some("Bearer s3cret")));
        assert!(token.accepts(Some("bearer s3cret")));
        assert!(token.accepts(Some("BEARER  s3cret")));
        assert!(!token.accepts(Some("Bearer s3cre")));
        assert!(!token.accepts(Some("Bearer s3cret2")));
        assert!(!token.accepts(Some("Basic s3cret")));
        assert!(!token.accepts(Some("s3cret")));
        assert!(!token.accepts(None));
        assert!(!token.accepts(Some("Bearer ")));
    }
}
