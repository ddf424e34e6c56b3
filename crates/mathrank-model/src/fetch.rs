//! Downloading a checkpoint from the Hugging Face hub (or any server with its URL layout,
//! `{endpoint}/{repo}/resolve/{revision}/{file}`), with resume and sha256 checks, then
//! converting it into the model cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

use crate::{Error, Manifest, Result, cache_root, convert_with, hex};

/// Where and what to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Hub base URL: `MATHRANK_HUB_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    pub repo: String,
    pub revision: String,
    /// Output model directory; default: the model cache.
    pub out: Option<PathBuf>,
    /// Hub access token (`HF_TOKEN`), for gated or private repositories.
    pub token: Option<String>,
    /// Cache root for downloads (and the default output): `MATHRANK_CACHE` or `~/.cache/mathrank`.
    pub cache: PathBuf,
}

impl FetchOptions {
    pub fn new(repo: &str, revision: &str) -> Self {
        Self {
            endpoint: std::env::var("MATHRANK_HUB_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into()),
            repo: repo.into(),
            revision: revision.into(),
            out: None,
            token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
            cache: cache_root(),
        }
    }
}

/// Progress of one file.
#[derive(Debug, Clone)]
pub struct FetchProgress<'a> {
    pub file: &'a str,
    pub downloaded: u64,
    pub total: Option<u64>,
}

struct Remote {
    /// sha256 published for LFS files (`X-Linked-Etag`); plain git files have none.
    sha256: Option<String>,
    size: Option<u64>,
}

fn fetch_error(options: &FetchOptions, what: String) -> Error {
    Error::Fetch(format!(
        "{what}; to install the model without the hub, download {files} of {repo} elsewhere into a folder and convert the model from there",
        files = "config.json, tokenizer.json and model.safetensors (or pytorch_model.bin)",
        repo = options.repo
    ))
}

fn url(options: &FetchOptions, file: &str) -> String {
    // A branch like `refs/pr/1` is one path segment in the hub's URLs.
    let revision = options.revision.replace('/', "%2F");
    format!("{}/{}/resolve/{revision}/{file}", options.endpoint.trim_end_matches('/'), options.repo)
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned())
}

fn agent(redirects: u32) -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(redirects)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn with_token<B>(request: ureq::RequestBuilder<B>, options: &FetchOptions) -> ureq::RequestBuilder<B> {
    match &options.token {
        Some(token) => request.header("Authorization", format!("Bearer {token}")),
        None => request,
    }
}

/// HEAD without following redirects: the hub puts the LFS sha256 on its own 302 response.
fn probe(options: &FetchOptions, file: &str) -> Result<Option<Remote>> {
    let response = with_token(agent(0).head(url(options, file)), options)
        .call()
        .map_err(|err| fetch_error(options, format!("cannot reach {} ({err})", options.endpoint)))?;
    match response.status().as_u16() {
        200..=399 => Ok(Some(Remote {
            sha256: header(&response, "x-linked-etag")
                .filter(|etag| etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())),
            size: header(&response, "x-linked-size")
                .or_else(|| header(&response, "content-length"))
                .and_then(|s| s.parse().ok()),
        })),
        404 => Ok(None),
        401 | 403 => Err(fetch_error(
            options,
            format!(
                "the hub refused access to {} (HTTP {}); set HF_TOKEN if the repository is gated",
                options.repo,
                response.status()
            ),
        )),
        status => Err(fetch_error(options, format!("HEAD {} answered HTTP {status}", url(options, file)))),
    }
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(crate::io("reading", path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(crate::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Downloads `file` into `dir`, resuming a `.part` left by an interrupted run. A file whose
/// sha256 does not match the published one is deleted and reported.
fn download(
    options: &FetchOptions,
    file: &str,
    remote: &Remote,
    dir: &Path,
    progress: &mut dyn FnMut(FetchProgress<'_>),
) -> Result<PathBuf> {
    let target = dir.join(file);
    let part = dir.join(format!("{file}.part"));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut request = with_token(agent(10).get(url(options, file)), options);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = request.call().map_err(|err| fetch_error(options, format!("downloading {file}: {err}")))?;
        let status = response.status().as_u16();
        let (mut output, mut downloaded) = match status {
            206 => (std::fs::OpenOptions::new().append(true).open(&part).map_err(crate::io("opening", &part))?, have),
            200 => (std::fs::File::create(&part).map_err(crate::io("creating", &part))?, 0),
            416 => {
                // Nothing left to fetch: the part file is complete already.
                (std::fs::OpenOptions::new().append(true).open(&part).map_err(crate::io("opening", &part))?, have)
            }
            other => return Err(fetch_error(options, format!("GET {} answered HTTP {other}", url(options, file)))),
        };
        let mut reader = response.into_body().into_with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut broken = None;
        if status != 416 {
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        output.write_all(&buf[..n]).map_err(crate::io("writing", &part))?;
                        downloaded += n as u64;
                        progress(FetchProgress { file, downloaded, total: remote.size });
                    }
                    Err(err) => {
                        broken = Some(err);
                        break;
                    }
                }
            }
        }
        output.flush().map_err(crate::io("writing", &part))?;
        drop(output);
        let short = remote.size.is_some_and(|size| downloaded < size);
        if broken.is_some() || short {
            if attempts < 5 {
                tracing::warn!(file, downloaded, error = ?broken, "connection dropped; resuming");
                continue;
            }
            return Err(fetch_error(
                options,
                format!("downloading {file} kept failing ({broken:?}); run the command again to resume"),
            ));
        }
        if let Some(expected) = &remote.sha256 {
            let actual = sha256_of(&part)?;
            if &actual != expected {
                let _ = std::fs::remove_file(&part);
                return Err(Error::Fetch(format!(
                    "checksum mismatch for {file} of {}: the hub publishes sha256 {expected}, the download has {actual}; nothing was cached, run the command again",
                    options.repo
                )));
            }
        }
        std::fs::rename(&part, &target).map_err(crate::io("renaming", &part))?;
        return Ok(target);
    }
}

/// Takes `OUT.lock` without waiting; another fetch into the same directory fails at once.
fn lock(out: &std::path::Path) -> Result<std::fs::File> {
    let path = out.with_extension("lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(crate::io("creating", parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(crate::io("opening", &path))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::{Seek, Write as _};
            let pid = std::process::id().to_string();
            let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(pid.as_bytes()));
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Error::Fetch(format!(
                "{} is being fetched by another mathrank (process {}); wait for it to finish",
                out.display(),
                holder.trim()
            )))
        }
        Err(std::fs::TryLockError::Error(err)) => Err(crate::io("locking", &path)(err)),
    }
}

/// Downloads config.json, tokenizer.json and the weights (safetensors preferred), checks them,
/// converts them to ONNX and publishes the model directory atomically.
pub fn fetch(options: &FetchOptions, progress: &mut dyn FnMut(FetchProgress<'_>)) -> Result<(PathBuf, Manifest)> {
    crate::validate_repo(&options.repo)?;
    crate::validate_revision(&options.revision)?;
    let revision = crate::revision_component(&options.revision);
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| options.cache.join("models").join(options.repo.replace('/', "--")).join(&revision));
    // One fetch per target at a time; the lock lives as long as this call.
    let _lock = lock(&out)?;
    // Before any download: neither the target nor its staging directory may be the user's.
    let staging = out.with_extension("converting");
    crate::check_replaceable(&out)?;
    crate::check_replaceable(&staging)?;
    let downloads = options.cache.join("downloads").join(options.repo.replace('/', "--")).join(&revision);
    std::fs::create_dir_all(&downloads).map_err(crate::io("creating", &downloads))?;
    let config = probe(options, "config.json")?.ok_or_else(|| {
        fetch_error(
            options,
            format!(
                "{} has no config.json at revision {} (is the repository name right?)",
                options.repo, options.revision
            ),
        )
    })?;
    let weights = match probe(options, "model.safetensors")? {
        Some(remote) => ("model.safetensors", remote),
        None => (
            "pytorch_model.bin",
            probe(options, "pytorch_model.bin")?.ok_or_else(|| {
                fetch_error(options, format!("{} has neither model.safetensors nor pytorch_model.bin", options.repo))
            })?,
        ),
    };
    download(options, "config.json", &config, &downloads, progress)?;
    match probe(options, "tokenizer.json")? {
        Some(remote) => {
            download(options, "tokenizer.json", &remote, &downloads, progress)?;
        }
        None => tracing::warn!(repo = %options.repo, "the repository has no tokenizer.json"),
    }
    download(options, weights.0, &weights.1, &downloads, progress)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(crate::io("removing", &staging))?;
    }
    let mut manifest = convert_with(&downloads, &staging, Some(weights.0))?;
    manifest.source_repo = options.repo.clone();
    let manifest_path = staging.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|err| crate::io("encoding", &manifest_path)(std::io::Error::other(err)))?;
    std::fs::write(&manifest_path, text).map_err(crate::io("writing", &manifest_path))?;
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(crate::io("replacing", &out))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(crate::io("creating", parent))?;
    }
    std::fs::rename(&staging, &out).map_err(crate::io("publishing", &out))?;
    Ok((out, manifest))
}
