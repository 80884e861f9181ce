//! The terminal page, embedded at build time (see build.rs; the files come from frontend/dist).

// Defines `ASSETS: &[(&str, &[u8], &str)]`: (path relative to the page root, bytes, content type).
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

/// The embedded file at `path`, given without a leading slash: `"index.html"`, `"assets/app.js"`.
pub fn get(path: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, bytes, content_type)| Asset {
            bytes,
            content_type,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_html_is_embedded() {
        let index = get("index.html").expect("index.html embedded");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(!index.bytes.is_empty());
        assert!(get("/index.html").is_none(), "paths have no leading slash");
        assert!(get("nope.txt").is_none());
    }

    #[test]
    fn page_references_existing_assets() {
        let index = std::str::from_utf8(get("index.html").unwrap().bytes).unwrap();
        // With TERMPOOL_SKIP_FRONTEND the placeholder references nothing.
        for needle in ["/assets/app.js", "/assets/app.css"] {
            if index.contains(needle) {
                let path = needle.trim_start_matches('/');
                let asset =
                    get(path).unwrap_or_else(|| panic!("{path} referenced but not embedded"));
                assert!(asset.content_type.starts_with("text/"));
                assert!(!asset.bytes.is_empty());
            }
        }
        assert!(ASSETS.iter().any(|(p, _, _)| *p == "index.html"));
    }
}
