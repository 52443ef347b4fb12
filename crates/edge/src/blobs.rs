//! The core's [`Blobs`] port over an R2 bucket (avatars). `wrangler dev` keeps it locally under
//! `.wrangler/state`.

use mirrorfarm_core::store::{BlobError, Blobs};
use worker::{Bucket, Env, HttpMetadata};

/// Name of the R2 binding.
pub(crate) const BINDING: &str = "BLOBS";

/// The bucket, if the deployment binds one.
pub(crate) struct R2Blobs(Option<Bucket>);

impl R2Blobs {
    pub(crate) fn new(env: &Env) -> Self {
        Self(env.bucket(BINDING).ok())
    }

    fn bucket(&self) -> Result<&Bucket, BlobError> {
        self.0.as_ref().ok_or(BlobError::Unavailable)
    }
}

fn platform(e: worker::Error) -> BlobError {
    BlobError::Platform(e.to_string())
}

impl Blobs for R2Blobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), BlobError> {
        let metadata = HttpMetadata { content_type: Some(content_type.to_owned()), ..HttpMetadata::default() };
        self.bucket()?.put(key, bytes).http_metadata(metadata).execute().await.map_err(platform)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(object) = self.bucket()?.get(key).execute().await.map_err(platform)? else { return Ok(None) };
        match object.body() {
            Some(body) => body.bytes().await.map(Some).map_err(platform),
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.bucket()?.delete(key).await.map_err(platform)
    }
}
