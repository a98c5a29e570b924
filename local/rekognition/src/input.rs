//! Turning request bytes into pixels the way Rekognition accepts them: JPEG or PNG only, at
//! least 80 pixels a side, EXIF orientation applied to JPEGs.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::api::{ErrorCode, RekognitionError};

/// The largest image file accepted from S3 (Rekognition's limit).
pub const MAX_S3_OBJECT_BYTES: u64 = 15 * 1024 * 1024;
/// The largest image accepted as raw bytes in the request (Rekognition's limit).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Rekognition's minimum width and height.
pub const MIN_SIDE: u32 = 80;
/// The largest decoded side accepted; this bounds the memory one decode can take.
pub const MAX_SIDE: u32 = 10_000;

/// A decoded image, upright.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub image: RgbImage,
    pub format: ImageFormat,
    /// What Rekognition reports as `OrientationCorrection`: the rotation that the EXIF
    /// orientation of a JPEG asked for and that was applied. `None` for PNGs and for JPEGs
    /// without an orientation tag (Rekognition leaves those as they are).
    pub orientation_correction: Option<&'static str>,
}

fn invalid_format() -> RekognitionError {
    RekognitionError::new(ErrorCode::InvalidImageFormat, "Request has invalid image format")
}

/// Decodes a JPEG or PNG file. Anything else, and corrupt data, is an
/// `InvalidImageFormatException`; an image under 80 pixels a side an
/// `InvalidParameterException`; one over [`MAX_SIDE`] an `ImageTooLargeException`.
pub fn decode(bytes: &[u8]) -> Result<DecodedImage, RekognitionError> {
    let format = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageFormat::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else {
        return Err(invalid_format());
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1024 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|error| decode_error(&error))?;
    let orientation = if format == ImageFormat::Jpeg {
        decoder.exif_metadata().ok().flatten().and_then(|exif| Orientation::from_exif_chunk(&exif))
    } else {
        None
    };
    let mut image = DynamicImage::from_decoder(decoder).map_err(|error| decode_error(&error))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let image = image.into_rgb8();
    let (width, height) = image.dimensions();
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(RekognitionError::new(
            ErrorCode::InvalidParameter,
            format!(
                "Request has invalid parameters: the image is {width}x{height} pixels; the minimum is {MIN_SIDE} pixels \
                 for both width and height"
            ),
        ));
    }
    Ok(DecodedImage { image, format, orientation_correction: orientation.map(rotation_of) })
}

fn decode_error(error: &image::ImageError) -> RekognitionError {
    match error {
        image::ImageError::Limits(_) => RekognitionError::new(
            ErrorCode::ImageTooLarge,
            format!("Image size is too large: more than {MAX_SIDE} pixels a side"),
        ),
        _ => invalid_format(),
    }
}

/// The rotation part of an EXIF orientation, as Rekognition names it. Mirrored orientations
/// (rare in camera output) are corrected in full but reported by their rotation alone, since
/// `OrientationCorrection` has no value for a mirror.
fn rotation_of(orientation: Orientation) -> &'static str {
    match orientation {
        Orientation::NoTransforms | Orientation::FlipHorizontal => "ROTATE_0",
        Orientation::Rotate90 | Orientation::Rotate90FlipH => "ROTATE_90",
        Orientation::Rotate180 | Orientation::FlipVertical => "ROTATE_180",
        Orientation::Rotate270 | Orientation::Rotate270FlipH => "ROTATE_270",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::new(width, height).write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn text_is_an_invalid_format() {
        assert_eq!(decode(b"hello, world").unwrap_err().code, ErrorCode::InvalidImageFormat);
    }

    #[test]
    fn a_truncated_png_is_an_invalid_format() {
        let bytes = png(100, 100);
        assert_eq!(decode(&bytes[..40]).unwrap_err().code, ErrorCode::InvalidImageFormat);
    }

    #[test]
    fn a_tiny_png_is_an_invalid_parameter() {
        assert_eq!(decode(&png(8, 8)).unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(decode(&png(80, 79)).unwrap_err().code, ErrorCode::InvalidParameter);
        assert!(decode(&png(80, 80)).is_ok());
    }

    #[test]
    fn exif_orientation_of_a_jpeg_is_applied_and_reported() {
        // A 120x90 JPEG with an EXIF APP1 segment saying "rotate 90 clockwise" (orientation 6).
        let mut jpeg = Vec::new();
        RgbImage::new(120, 90).write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        let exif: Vec<u8> = [
            b"Exif\0\0".as_slice(),
            b"MM\0\x2a\0\0\0\x08",                       // big-endian TIFF header, first IFD at 8
            &[0, 1],                                     // one entry
            &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0], // Orientation, SHORT, 1, value 6
            &[0, 0, 0, 0],
        ]
        .concat();
        let mut with_exif = jpeg[..2].to_vec();
        with_exif.extend_from_slice(&[0xFF, 0xE1]);
        with_exif.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        with_exif.extend_from_slice(&exif);
        with_exif.extend_from_slice(&jpeg[2..]);
        let decoded = decode(&with_exif).unwrap();
        assert_eq!(decoded.image.dimensions(), (90, 120));
        assert_eq!(decoded.orientation_correction, Some("ROTATE_90"));
        let plain = decode(&jpeg).unwrap();
        assert_eq!(plain.orientation_correction, None);
    }
}
