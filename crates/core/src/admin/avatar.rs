//! User avatars: the `avatar` field of a `multipart/form-data` upload, checked by reading the
//! image's own header (PNG, JPEG or GIF; at most 1 MB and 1024×1024 pixels), never by trusting
//! the file name or the declared type.

/// Largest avatar accepted, bytes.
pub const MAX_AVATAR_BYTES: usize = 1024 * 1024;

/// Largest width and height, pixels.
pub const MAX_AVATAR_PIXELS: u32 = 1024;

/// Largest upload body: the image plus the multipart framing around it.
pub const MAX_UPLOAD_BYTES: usize = MAX_AVATAR_BYTES + 16 * 1024;

/// Why an avatar was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    /// The body is not multipart/form-data with a boundary.
    #[error("Send the avatar as multipart/form-data.")]
    NotMultipart,
    /// No part named `avatar`.
    #[error("The upload has no part named \"avatar\".")]
    NoAvatarPart,
    /// The image is larger than 1 MB.
    #[error("Avatars may be at most 1 MB.")]
    TooLarge,
    /// Not a PNG, JPEG or GIF, as its header says.
    #[error("Avatars must be PNG, JPEG or GIF images.")]
    NotAnImage,
    /// Wider or taller than 1024 pixels.
    #[error("Avatars may be at most 1024×1024 pixels; this one is {0}×{1}.")]
    TooManyPixels(u32, u32),
}

/// An image's format, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// GIF.
    Gif,
}

impl ImageFormat {
    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
        }
    }
}

/// A checked avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// The image's bytes.
    pub bytes: Vec<u8>,
    /// What they are.
    pub format: ImageFormat,
}

/// Reads the `avatar` part of a multipart body and checks the image.
pub fn from_upload(content_type: Option<&str>, body: &[u8]) -> Result<Avatar, AvatarError> {
    let boundary = multipart_boundary(content_type).ok_or(AvatarError::NotMultipart)?;
    let bytes = multipart_part(body, &boundary, "avatar").ok_or(AvatarError::NoAvatarPart)?;
    check_image(bytes.to_vec())
}

/// The boundary of a `multipart/form-data` content type (hook scripts are uploaded so too).
pub(crate) fn multipart_boundary(content_type: Option<&str>) -> Option<String> {
    content_type
        .filter(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data")))
        .and_then(|t| {
            t.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.eq_ignore_ascii_case("boundary").then(|| v.trim_matches('"').to_owned())
            })
        })
        .filter(|b| !b.is_empty())
}

/// Checks an image's size and header.
pub fn check_image(bytes: Vec<u8>) -> Result<Avatar, AvatarError> {
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(AvatarError::TooLarge);
    }
    let (format, width, height) = dimensions(&bytes).ok_or(AvatarError::NotAnImage)?;
    if width > MAX_AVATAR_PIXELS || height > MAX_AVATAR_PIXELS {
        return Err(AvatarError::TooManyPixels(width, height));
    }
    Ok(Avatar { bytes, format })
}

/// The content of the part named `name`.
pub(crate) fn multipart_part<'a>(body: &'a [u8], boundary: &str, name: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            return None;
        }
        let headers_end = find(rest, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&rest[..headers_end]).ok()?;
        let content = &rest[headers_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes())?;
        let named = headers.lines().any(|line| {
            let lower = line.to_ascii_lowercase();
            lower.starts_with("content-disposition:")
                && line.split(';').any(|p| p.trim().strip_prefix("name=").is_some_and(|v| v.trim_matches('"') == name))
        });
        if named {
            return Some(&content[..end]);
        }
        rest = &content[end + 2..];
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Format, width and height from the image's header.
fn dimensions(b: &[u8]) -> Option<(ImageFormat, u32, u32)> {
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let be16 = |i: usize| Some(u32::from(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?)));
    let le16 = |i: usize| Some(u32::from(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?)));
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return Some((ImageFormat::Png, be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some((ImageFormat::Gif, le16(6)?, le16(8)?));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        // Walk the segments to the first start-of-frame marker.
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            let length = be16(i + 2)? as usize;
            let is_frame = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if is_frame {
                return Some((ImageFormat::Jpeg, be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + length;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8];
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[1, 1, 0x11, 0]);
        b
    }

    fn upload(name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n".to_vec();
        body.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\n").as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: image/png\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    const MULTIPART: Option<&str> = Some("multipart/form-data; boundary=XyZ");

    #[test]
    fn reads_the_avatar_part_and_its_header() {
        let a = from_upload(MULTIPART, &upload("avatar", &png(64, 32))).expect("png");
        assert_eq!((a.format, a.bytes, a.format.content_type()), (ImageFormat::Png, png(64, 32), "image/png"));
        let gif = b"GIF89a\x10\x00\x20\x00\x00\x00\x00".to_vec();
        assert_eq!(check_image(gif).map(|a| a.format), Ok(ImageFormat::Gif));
        assert_eq!(check_image(jpeg(100, 50)).map(|a| a.format), Ok(ImageFormat::Jpeg));
    }

    #[test]
    fn refuses_what_is_not_a_small_image() {
        assert_eq!(from_upload(Some("application/json"), b"{}"), Err(AvatarError::NotMultipart));
        assert_eq!(from_upload(MULTIPART, &upload("picture", &png(1, 1))), Err(AvatarError::NoAvatarPart));
        assert_eq!(from_upload(MULTIPART, &upload("avatar", b"<svg/>")), Err(AvatarError::NotAnImage));
        assert_eq!(check_image(png(2048, 10)), Err(AvatarError::TooManyPixels(2048, 10)));
        assert_eq!(check_image(jpeg(10, 1025)), Err(AvatarError::TooManyPixels(10, 1025)));
        let mut big = png(10, 10);
        big.resize(MAX_AVATAR_BYTES + 1, 0);
        assert_eq!(check_image(big), Err(AvatarError::TooLarge));
    }
}
