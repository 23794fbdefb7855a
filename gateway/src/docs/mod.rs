//! `/docs`: the API reference rendered by Swagger UI from `/openapi.json`,
//! with "Try it out" against this same gateway. Swagger UI's files come
//! from the npm package `swagger-ui-dist`, installed next to the gateway
//! when it is built (`GATEWAY_DOCS_DIR`; the image and `deploy/up.sh` set
//! it) and held in memory, so the page needs no CDN.

use std::{path::Path, sync::Arc};

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, header};

use crate::{
    AppState,
    problem::{Problem, ProblemContext},
};

/// The page, and the script that starts Swagger UI on it (scripts are
/// files: the page's policy allows no inline script).
const PAGE: &str = include_str!("page.html");
const START: &str = include_str!("start.js");

/// Swagger UI's own script and stylesheet.
pub struct Docs {
    bundle: Bytes,
    stylesheet: Bytes,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "GATEWAY_DOCS_DIR={dir}: cannot read {file} ({source}); it holds the npm package swagger-ui-dist (deploy/up.sh fetches it)"
)]
pub struct DocsError {
    dir: String,
    file: &'static str,
    source: std::io::Error,
}

impl Docs {
    /// Reads Swagger UI's files from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DocsError> {
        let read = |file: &'static str| {
            std::fs::read(dir.join(file))
                .map(Bytes::from)
                .map_err(|source| DocsError {
                    dir: dir.display().to_string(),
                    file,
                    source,
                })
        };
        Ok(Self {
            bundle: read("swagger-ui-bundle.js")?,
            stylesheet: read("swagger-ui.css")?,
        })
    }
}

/// What the page may load: its own origin's scripts, styles and requests
/// (Swagger UI sets inline styles, and shows data: images).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// `answer` from the loaded files, or a problem saying the page is not
/// installed here.
fn with_docs(state: &AppState, request: &Request, answer: impl FnOnce(&Docs) -> Response) -> Response {
    match &state.docs {
        Some(docs) => answer(docs),
        None => Problem::new(
            http::StatusCode::NOT_FOUND,
            "docs-not-installed",
            "Reference not installed",
            "this gateway serves no reference page: set GATEWAY_DOCS_DIR to swagger-ui-dist's files; /openapi.json describes the API",
        )
        .render(&ProblemContext::of_request(request)),
    }
}

pub async fn page(State(state): State<Arc<AppState>>, request: Request) -> Response {
    with_docs(&state, &request, |_| {
        asset("text/html; charset=utf-8", Bytes::from_static(PAGE.as_bytes()))
    })
}

pub async fn start(State(state): State<Arc<AppState>>, request: Request) -> Response {
    with_docs(&state, &request, |_| {
        asset("text/javascript", Bytes::from_static(START.as_bytes()))
    })
}

pub async fn bundle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    with_docs(&state, &request, |docs| asset("text/javascript", docs.bundle.clone()))
}

pub async fn stylesheet(State(state): State<Arc<AppState>>, request: Request) -> Response {
    with_docs(&state, &request, |docs| asset("text/css", docs.stylesheet.clone()))
}
