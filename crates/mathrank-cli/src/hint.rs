//! The flags and commands that remedy an error. The library crates say what failed without
//! naming this binary's flags; the CLI adds them here, in one place, after the error.

/// What to pass or run about `err`, when one of this binary's flags or commands is the remedy.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(err) = cause.downcast_ref::<mathrank_index::Error>() {
            return index(err);
        }
        if let Some(err) = cause.downcast_ref::<mathrank_rerank::Error>() {
            return rerank(err);
        }
        if let Some(err) = cause.downcast_ref::<mathrank_model::Error>() {
            return model(err);
        }
        if let Some(err) = cause.downcast_ref::<mathrank_server::ServeError>() {
            return serve(err);
        }
        None
    })
}

fn index(err: &mathrank_index::Error) -> Option<String> {
    use mathrank_index::Error;
    match err {
        Error::NotAnIndex { path, .. } => Some(format!(
            "build one with `mathrank index --dump FILE --index {path}` or `mathrank index --sample --index {path}`"
        )),
        Error::Incompatible { path, .. } => {
            Some(format!("rebuild it with `mathrank index --dump FILE --index {path}`"))
        }
        Error::TargetNotIndex { .. } => Some("choose another --index directory".into()),
        _ => None,
    }
}

fn rerank(err: &mathrank_rerank::Error) -> Option<String> {
    use mathrank_rerank::Error;
    match err {
        Error::LibraryNotFound { .. } => {
            Some("pass --ort-lib PATH (MATHRANK_ORT_LIB), or run scripts/setup-ort.sh".into())
        }
        Error::MissingFile { .. } => Some("get a model with `mathrank model fetch`, or pass --model DIR".into()),
        Error::TooLong { limit, .. } => Some(format!("pass --max-length {limit} or less")),
        Error::InvalidModel { reason, .. } if reason.contains("cpu provider") => Some("pass --provider cpu".into()),
        _ => None,
    }
}

fn model(err: &mathrank_model::Error) -> Option<String> {
    use mathrank_model::Error;
    match err {
        Error::Fetch(_) => Some("run `mathrank model convert --from FOLDER --out DIR`, then pass --model DIR".into()),
        Error::NotModelDir { .. } => Some("choose another --out".into()),
        _ => None,
    }
}

fn serve(err: &mathrank_server::ServeError) -> Option<String> {
    use mathrank_server::ServeError;
    match err {
        ServeError::Tls(_) | ServeError::TlsFile { .. } => {
            Some("pass a PEM certificate chain with --tls-cert and its PEM private key with --tls-key".into())
        }
        ServeError::EmptyToken => {
            Some("set --auth-token (MATHRANK_AUTH_TOKEN) to a secret, or leave it unset to run without auth".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_named_where_they_are_the_remedy() {
        let missing = anyhow::Error::new(mathrank_index::Error::NotAnIndex { path: "idx".into(), reason: "x".into() })
            .context("opening the index");
        assert!(hint(&missing).unwrap().contains("mathrank index --dump FILE --index idx"));
        let fetch = anyhow::Error::new(mathrank_model::Error::Fetch("cannot reach the hub".into()));
        assert!(hint(&fetch).unwrap().contains("model convert --from"));
        let ort = anyhow::Error::new(mathrank_rerank::Error::LibraryNotFound { searched: "x".into() });
        assert!(hint(&ort).unwrap().contains("--ort-lib"));
        assert!(hint(&anyhow::Error::new(mathrank_server::ServeError::EmptyToken)).unwrap().contains("--auth-token"));
        assert!(hint(&anyhow::anyhow!("something else")).is_none());
    }
}
