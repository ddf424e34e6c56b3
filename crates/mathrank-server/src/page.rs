//! The search page for people: `GET /` on the main port. A question form with a live preview
//! of its math, the search controls, and the hits with their math typeset by KaTeX, each
//! linked to its thread on the site (`/a/{answer_id}` under the site URL). Everything it needs
//! is embedded in the binary (`assets/`: the page, and KaTeX 0.19 from npm with its woff2
//! fonts and license, vendored by `scripts/vendor-katex.sh`), so it works offline with no
//! build step. The page calls the HTTP API (`/v1/info`, `/v1/search`, `/v1/answers/{id}`)
//! like any client, with the bearer token the user gives it when the server asks for one.
//!
//! Post text never reaches the DOM as HTML (see `assets/page.js`), and every page response
//! carries a Content-Security-Policy that allows only this server's own scripts, styles and
//! fonts, no inline script, and Trusted Types (so no script of the page can assign HTML
//! strings at all).
//!
//! Routes: `/` (the page), `/assets/{path}` (its files), `/page/config` (the site URL and
//! whether a token is needed), all without auth: they hold nothing but the page itself.
//!
//! ```
//! let url = mathrank_server::site_url("https://math.stackexchange.com/").unwrap();
//! assert_eq!(url, "https://math.stackexchange.com");
//! assert!(mathrank_server::site_url("javascript:alert(1)").is_err());
//! ```

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ServeError;

/// The site answers link to when none is configured.
pub const DEFAULT_SITE_URL: &str = "https://math.stackexchange.com";

/// What page responses allow: this server's own scripts, styles, fonts and API, nothing
/// inline, nothing framed, and no HTML assigned from strings (Trusted Types with no policy).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     font-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file.
struct Asset {
    /// Under `/assets/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const WOFF2: &str = "font/woff2";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../assets/", $path)) }
    };
}

const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");

static ASSETS: &[Asset] = &[
    asset!("page.js", JS),
    asset!("math.js", JS),
    asset!("page.css", CSS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("katex/katex.min.js", JS),
    asset!("katex/katex.min.css", CSS),
    asset!("katex/LICENSE", "text/plain; charset=utf-8"),
    asset!("katex/fonts/KaTeX_AMS-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Caligraphic-Bold.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Caligraphic-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Fraktur-Bold.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Fraktur-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Main-Bold.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Main-BoldItalic.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Main-Italic.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Main-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Math-BoldItalic.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Math-Italic.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_SansSerif-Bold.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_SansSerif-Italic.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_SansSerif-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Script-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Size1-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Size2-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Size3-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Size4-Regular.woff2", WOFF2),
    asset!("katex/fonts/KaTeX_Typewriter-Regular.woff2", WOFF2),
];

/// Entity tags of the index page and of each asset (in `ASSETS` order), computed once. The
/// std hasher is the same in every process of one build, so replicas agree.
static ETAGS: LazyLock<(String, Vec<String>)> =
    LazyLock::new(|| (etag_of(INDEX_HTML), ASSETS.iter().map(|asset| etag_of(asset.body)).collect()));

fn etag_of(body: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}-{:x}\"", hasher.finish(), body.len())
}

/// Checks a site URL for the page's links (`http://` or `https://`, a host, nothing that
/// could break out of a URL) and drops its trailing slashes.
pub fn site_url(text: &str) -> Result<String, ServeError> {
    let invalid = |reason: &'static str| ServeError::SiteUrl { url: text.to_owned(), reason };
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("it must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("it names no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`')) {
        return Err(invalid("it holds whitespace, quotes, angle brackets or backslashes"));
    }
    if url.contains(['?', '#']) {
        return Err(invalid("it must not carry a query or a fragment: answers link to SITE/a/ID"));
    }
    Ok(url.to_owned())
}

/// The page's routes, to merge beside the API. `site_url` must have passed [`site_url`].
pub(crate) fn router(site_url: &str, auth: bool) -> Router {
    let config: Arc<str> = serde_json::json!({
        "siteUrl": site_url,
        "auth": auth,
        "katex": include_str!("../assets/katex/VERSION").trim(),
    })
    .to_string()
    .into();
    let config = move || {
        let config = Arc::clone(&config);
        async move { respond(None, "application/json", "no-store", config.as_bytes().to_vec(), None) }
    };
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset)).route("/page/config", get(config))
}

async fn index(headers: HeaderMap) -> Response {
    let etag = &ETAGS.0;
    respond(Some(&headers), "text/html; charset=utf-8", "no-cache", INDEX_HTML.to_vec(), Some(etag))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(at) = ASSETS.iter().position(|asset| asset.path == path) else {
        return (StatusCode::NOT_FOUND, "no such page asset").into_response();
    };
    let asset = &ASSETS[at];
    respond(Some(&headers), asset.content_type, "no-cache", asset.body.to_vec(), Some(&ETAGS.1[at]))
}

/// A page response with the security headers; 304 when the caller holds this version.
fn respond(
    request: Option<&HeaderMap>,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<u8>,
    etag: Option<&str>,
) -> Response {
    let fresh = match (request.and_then(|h| h.get(header::IF_NONE_MATCH)), etag) {
        (Some(held), Some(etag)) => held.to_str().is_ok_and(|held| held.split(',').any(|tag| tag.trim() == etag)),
        _ => false,
    };
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if let Some(value) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn every_font_katex_asks_for_in_woff2_is_embedded() {
        let css = text(ASSETS.iter().find(|a| a.path == "katex/katex.min.css").unwrap().body);
        let wanted: Vec<&str> = css
            .split("url(")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|u| u.ends_with(".woff2"))
            .collect();
        assert_eq!(wanted.len(), 20, "{wanted:?}");
        for font in wanted {
            let path = format!("katex/{font}");
            let asset = ASSETS.iter().find(|a| a.path == path).unwrap_or_else(|| panic!("{path} is not embedded"));
            assert!(asset.body.starts_with(b"wOF2"), "{path} is not a woff2 font");
        }
    }

    #[test]
    fn the_page_loads_only_embedded_files_and_has_nothing_inline() {
        let html = text(INDEX_HTML);
        for attribute in ["src=\"", "href=\""] {
            for url in html.split(attribute).skip(1).filter_map(|rest| rest.split('"').next()) {
                if url == "/" {
                    continue;
                }
                let path = url.strip_prefix("/assets/").unwrap_or_else(|| panic!("{url} is not a page asset"));
                assert!(ASSETS.iter().any(|a| a.path == path), "{url} is not embedded");
            }
        }
        // CSP would block inline script and style anyway; keep the page free of them.
        assert_eq!(html.matches("<script").count(), html.matches("<script src=\"/assets/").count());
        assert!(!html.contains("<style") && !html.contains(" style="), "inline style in index.html");
        assert!(!html.split_whitespace().any(|word| word.starts_with("on") && word.contains('=')), "inline handler");
    }

    #[test]
    fn page_scripts_never_assign_html() {
        for path in ["page.js", "math.js"] {
            let script = text(ASSETS.iter().find(|a| a.path == path).unwrap().body);
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                assert!(!script.contains(sink), "{path} uses {sink}");
            }
        }
    }

    #[test]
    fn the_policy_allows_nothing_unsafe() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'none'"));
    }

    #[test]
    fn site_urls_are_checked() {
        assert_eq!(site_url("https://math.stackexchange.com").unwrap(), "https://math.stackexchange.com");
        assert_eq!(site_url(" http://localhost:8080/se/ ").unwrap(), "http://localhost:8080/se");
        for bad in [
            "",
            "math.stackexchange.com",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://a b",
            "https://x\"onmouseover=\"",
            "https://x/<script>",
            "https://x/?q=1",
            "data:text/html,hi",
        ] {
            assert!(matches!(site_url(bad), Err(ServeError::SiteUrl { .. })), "{bad:?} was accepted");
        }
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
        assert_eq!(ETAGS.1.len(), ASSETS.len());
    }
}
