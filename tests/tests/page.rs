//! The search page as HTTP serves it: `/` with its security headers, the embedded assets with
//! revalidation, the page's configuration, and no auth on the page itself. What the page does
//! in a browser is checked by scripts/check-page.py (headless chromium).

use mathrank_engine::{Engine, Limits};
use mathrank_server::{BearerToken, CONTENT_SECURITY_POLICY, ServeOptions};
use mathrank_tests::{TestServer, sample_index};
use serde_json::Value;

async fn server(options: ServeOptions) -> TestServer {
    TestServer::start(Some(Engine::new(sample_index(), None, Limits::default())), options).await
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    reqwest::get(server.url(path)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let server = server(ServeOptions::default()).await;
    let page = get(&server, "/").await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form id=\"search-form\""), "{html}");

    for (path, content_type) in [
        ("/assets/page.js", "text/javascript; charset=utf-8"),
        ("/assets/math.js", "text/javascript; charset=utf-8"),
        ("/assets/page.css", "text/css; charset=utf-8"),
        ("/assets/katex/katex.min.js", "text/javascript; charset=utf-8"),
        ("/assets/katex/fonts/KaTeX_Main-Regular.woff2", "font/woff2"),
        ("/assets/katex/LICENSE", "text/plain; charset=utf-8"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["content-security-policy"], CONTENT_SECURITY_POLICY, "{path}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
    for missing in ["/assets/nope.js", "/assets/../src/page.rs", "/assets/katex/fonts/KaTeX_Main-Regular.ttf"] {
        assert_eq!(get(&server, missing).await.status(), 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_revalidate_with_their_entity_tag() {
    let server = server(ServeOptions::default()).await;
    let first = get(&server, "/assets/katex/katex.min.css").await;
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let again =
        client.get(server.url("/assets/katex/katex.min.css")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = client.get(server.url("/assets/page.css")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(other.status(), 200, "another file's tag must not match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_open_and_says_whether_the_api_wants_a_token() {
    let open = server(ServeOptions::default()).await;
    let config: Value = get(&open, "/page/config").await.json().await.unwrap();
    assert_eq!(config["siteUrl"], "https://math.stackexchange.com");
    assert_eq!(config["auth"], false);

    let options = ServeOptions {
        auth_token: Some(BearerToken::new("s3cret").unwrap()),
        site_url: "https://mirror.example/math/".into(),
        ..ServeOptions::default()
    };
    let guarded = server(options).await;
    assert_eq!(get(&guarded, "/").await.status(), 200, "the page itself needs no token");
    let config: Value = get(&guarded, "/page/config").await.json().await.unwrap();
    assert_eq!(config["siteUrl"], "https://mirror.example/math");
    assert_eq!(config["auth"], true);
    assert_eq!(get(&guarded, "/v1/info").await.status(), 401, "the API still does");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_url_that_is_not_http_is_refused_at_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = mathrank_server::ServerState::new().await;
    let options = ServeOptions { site_url: "javascript:alert(1)".into(), ..ServeOptions::default() };
    let err = mathrank_server::serve(listener, state, options, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, mathrank_server::ServeError::SiteUrl { .. }), "{err}");
    assert!(err.to_string().contains("https://"), "{err}");
}
