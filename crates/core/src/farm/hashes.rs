//! What the farm's two hashes cover, so that the node that computes a copy's hash and the edge
//! that publishes a repository's hash (and another mirrorfarm instance comparing them) agree.
//! The SHA-256 itself is taken by whoever holds the bytes: the node (`sha2`) or the edge
//! (WebCrypto).

use crate::sync::Refs;

/// The hash of something never computed (a repository never synced): 64 zeros, as Bitbucket
/// shows hashes it has not computed yet.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes the content hash is taken over: one line `"<object id> <ref name>\n"` for every
/// branch (`refs/heads/*`) and tag (`refs/tags/*`, not peeled), by ref name bytewise.
pub fn content_listing(refs: &Refs) -> String {
    // A BTreeMap of Strings iterates in bytewise order.
    refs.iter()
        .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .map(|(name, oid)| format!("{oid} {name}\n"))
        .collect()
}

/// A repository's metadata as the metadata hash covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// The project's key.
    pub project_key: &'a str,
    /// The project's name.
    pub project_name: &'a str,
    /// The repository's slug.
    pub slug: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its description (`None` and empty are the same).
    pub description: Option<&'a str>,
    /// Whether it is public.
    pub public: bool,
}

/// The bytes the metadata hash is taken over: the JSON object
/// `{"projectKey","projectName","slug","name","description","public"}` in exactly that order,
/// without spaces, `description` `null` when empty.
pub fn metadata_listing(m: &Metadata<'_>) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let description = m.description.filter(|d| !d.is_empty()).map_or_else(|| "null".to_owned(), text);
    format!(
        "{{\"projectKey\":{},\"projectName\":{},\"slug\":{},\"name\":{},\"description\":{description},\"public\":{}}}",
        text(m.project_key),
        text(m.project_name),
        text(m.slug),
        text(m.name),
        m.public
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use gix_hash::ObjectId;

    #[test]
    fn content_covers_heads_and_tags_in_byte_order() {
        let oid = |c: char| ObjectId::from_hex(c.to_string().repeat(40).as_bytes()).expect("hex");
        let refs: Refs = [
            ("refs/heads/main", oid('a')),
            ("refs/heads/Z", oid('b')),
            ("refs/tags/v1", oid('c')),
            ("refs/pull/1/head", oid('d')),
            ("HEAD", oid('a')),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_owned(), o))
        .collect();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        assert_eq!(content_listing(&refs), format!("{b} refs/heads/Z\n{a} refs/heads/main\n{c} refs/tags/v1\n"));
    }

    #[test]
    fn metadata_is_one_canonical_object() {
        let m = Metadata {
            project_key: "PRJ",
            project_name: "The \"P\"",
            slug: "repo",
            name: "Repo",
            description: Some(""),
            public: true,
        };
        assert_eq!(
            metadata_listing(&m),
            r#"{"projectKey":"PRJ","projectName":"The \"P\"","slug":"repo","name":"Repo","description":null,"public":true}"#
        );
    }
}
