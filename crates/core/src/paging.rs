//! Pagination in both dialects: GitLab's `page`/`per_page` with `Link` and `X-*` headers, and
//! Bitbucket's `start`/`limit` with a page envelope.

use serde::Serialize;

use crate::api::Query;

/// A GitLab page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitLabPage {
    /// 1-based page number.
    pub page: u32,
    /// Items per page, 1..=100.
    pub per_page: u32,
}

impl GitLabPage {
    /// Reads `page` (default 1) and `per_page` (default 20, at most 100) as GitLab does:
    /// values that are not positive numbers fall back to the defaults.
    pub fn from_query(query: &Query) -> Self {
        let num = |key: &str| query.get(key).and_then(|v| v.parse::<u32>().ok()).filter(|n| *n > 0);
        Self { page: num("page").unwrap_or(1), per_page: num("per_page").unwrap_or(20).min(100) }
    }

    /// Rows to skip.
    pub fn offset(self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }

    /// The `Link`, `X-Total`, `X-Total-Pages`, `X-Page`, `X-Per-Page`, `X-Next-Page` and
    /// `X-Prev-Page` headers for a list of `total` items served at `url` (without a query).
    pub fn headers(self, url: &str, query: &Query, total: u64) -> Vec<(String, String)> {
        let per = u64::from(self.per_page);
        let pages = total.div_ceil(per).max(1);
        let page = u64::from(self.page);
        let next = (page < pages).then_some(page + 1);
        let prev = (page > 1).then(|| (page - 1).min(pages));
        let link = |p: u64, rel: &str| {
            let mut q = query.without(&["page", "per_page"]);
            q.push(("page".into(), p.to_string()));
            q.push(("per_page".into(), per.to_string()));
            format!("<{url}?{}>; rel=\"{rel}\"", Query::encode_pairs(&q))
        };
        let mut links = Vec::new();
        if let Some(p) = prev {
            links.push(link(p, "prev"));
        }
        if let Some(n) = next {
            links.push(link(n, "next"));
        }
        links.push(link(1, "first"));
        links.push(link(pages, "last"));
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        vec![
            ("Link".into(), links.join(", ")),
            ("X-Total".into(), total.to_string()),
            ("X-Total-Pages".into(), pages.to_string()),
            ("X-Page".into(), page.to_string()),
            ("X-Per-Page".into(), per.to_string()),
            ("X-Next-Page".into(), opt(next)),
            ("X-Prev-Page".into(), opt(prev)),
        ]
    }
}

/// A Bitbucket page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitbucketPage {
    /// Index of the first item.
    pub start: u64,
    /// Most items returned, 1..=1000.
    pub limit: u64,
}

impl BitbucketPage {
    /// Reads `start` (default 0) and `limit` (default 25, at most 1000).
    pub fn from_query(query: &Query) -> Self {
        let start = query.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit = query.get("limit").and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(25).min(1000);
        Self { start, limit }
    }

    /// Wraps one page read from storage, `more` telling whether items follow it.
    pub fn open<T>(self, values: Vec<T>, more: bool) -> PageOf<T> {
        let end = self.start + values.len() as u64;
        PageOf {
            size: values.len(),
            limit: self.limit,
            is_last_page: !more,
            start: self.start,
            next_page_start: more.then_some(end),
            values,
        }
    }
}

/// Bitbucket's page envelope.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PageOf<T> {
    /// Items in this page.
    pub size: usize,
    /// The limit asked for.
    pub limit: u64,
    /// Whether no items follow.
    pub is_last_page: bool,
    /// Index of the first item.
    pub start: u64,
    /// Where the next page starts, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_start: Option<u64>,
    /// The items.
    pub values: Vec<T>,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).expect(name)
    }

    #[test]
    fn gitlab_defaults_and_clamps() {
        assert_eq!(GitLabPage::from_query(&Query::parse("")), GitLabPage { page: 1, per_page: 20 });
        assert_eq!(GitLabPage::from_query(&Query::parse("page=0&per_page=500")), GitLabPage { page: 1, per_page: 100 });
        assert_eq!(GitLabPage::from_query(&Query::parse("page=x&per_page=-1")), GitLabPage { page: 1, per_page: 20 });
    }

    #[test]
    fn gitlab_headers_link_pages() {
        let q = Query::parse("page=2&per_page=2&sort=asc");
        let p = GitLabPage::from_query(&q);
        assert_eq!(p.offset(), 2);
        let h = p.headers("http://h/api/v4/projects/1/remote_mirrors", &q, 5);
        assert_eq!(header(&h, "X-Total"), "5");
        assert_eq!(header(&h, "X-Total-Pages"), "3");
        assert_eq!(header(&h, "X-Next-Page"), "3");
        assert_eq!(header(&h, "X-Prev-Page"), "1");
        let link = header(&h, "Link");
        assert!(
            link.contains("<http://h/api/v4/projects/1/remote_mirrors?sort=asc&page=3&per_page=2>; rel=\"next\""),
            "{link}"
        );
        assert!(link.contains("page=3&per_page=2>; rel=\"last\""), "{link}");
        let last = GitLabPage { page: 3, per_page: 2 }.headers("u", &q, 5);
        assert_eq!(header(&last, "X-Next-Page"), "");
        assert!(!header(&last, "Link").contains("rel=\"next\""));
    }

    #[test]
    fn bitbucket_pages() {
        let items: Vec<u32> = (0..5).collect();
        // Storage reads one row more than the limit to learn whether more follow.
        let page = |q: BitbucketPage| {
            let rows: Vec<u32> = items.iter().copied().skip(q.start as usize).take(q.limit as usize + 1).collect();
            let more = rows.len() > q.limit as usize;
            q.open(rows.into_iter().take(q.limit as usize).collect(), more)
        };
        let p = page(BitbucketPage::from_query(&Query::parse("start=2&limit=2")));
        assert_eq!((p.size, p.is_last_page, p.next_page_start, p.values.clone()), (2, false, Some(4), vec![2, 3]));
        let last = page(BitbucketPage { start: 4, limit: 2 });
        assert!(last.is_last_page && last.next_page_start.is_none());
        let beyond = page(BitbucketPage { start: 9, limit: 2 });
        assert_eq!(beyond.size, 0);
        assert!(beyond.is_last_page);
        assert_eq!(BitbucketPage::from_query(&Query::parse("limit=5000")).limit, 1000);
        let json = serde_json::to_value(&last).expect("serializes");
        assert_eq!(json["isLastPage"], true);
        assert!(json.get("nextPageStart").is_none());
    }
}
