//! The core's [`Blobs`] port over an R2 bucket (avatars, hook scripts, migration archives), and
//! the streamed transfers the core asks for archives. `wrangler dev` keeps it locally under
//! `.wrangler/state`.

use mirrorfarm_core::api::BlobTransfer;
use mirrorfarm_core::store::{BlobError, Blobs};
use worker::{Bucket, Data, Env, HttpMetadata, Request, Response, ResponseBuilder};

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

    /// Carries out a transfer the core decided on, streaming: the request's unread body into R2
    /// (`response` answered once it is stored), or an R2 object out as the response's body. Bytes
    /// never pass through the Worker's memory. `Err` says what failed, for a 500/404.
    pub(crate) async fn transfer(
        &self,
        transfer: &BlobTransfer,
        req: &Request,
        response: Response,
    ) -> Result<Response, (u16, String)> {
        let failed = |e: BlobError| (500, e.to_string());
        match transfer {
            BlobTransfer::Store { key } => {
                let body = req.inner().body().ok_or((400, "The upload has no body.".to_owned()))?;
                let metadata =
                    HttpMetadata { content_type: Some("application/x-tar".into()), ..HttpMetadata::default() };
                self.bucket()
                    .map_err(failed)?
                    .put(key, Data::ReadableStream(body))
                    .http_metadata(metadata)
                    .execute()
                    .await
                    .map_err(|e| failed(platform(e)))?;
                Ok(response)
            }
            BlobTransfer::Serve { key } => {
                let object =
                    self.bucket().map_err(failed)?.get(key).execute().await.map_err(|e| failed(platform(e)))?;
                let Some(object) = object else { return Err((404, format!("No archive exists at {key}."))) };
                let size = object.size();
                let body = object
                    .body()
                    .ok_or((404, format!("No archive exists at {key}.")))?
                    .response_body()
                    .map_err(|e| failed(platform(e)))?;
                let mut served = ResponseBuilder::new().body(body);
                let headers = served.headers_mut();
                let _ = headers.set("Content-Type", "application/x-tar");
                let _ = headers.set("Content-Length", &size.to_string());
                Ok(served)
            }
        }
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

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.bucket()?.head(key).await.map_err(platform)?.map(|o| o.size()))
    }
}
