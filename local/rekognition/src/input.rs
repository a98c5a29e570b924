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
/// The largest decoded side accepted.
pub const MAX_SIDE: u32 = 10_000;
/// The most pixels accepted (a 48-megapixel camera's photo fits), checked against the
/// image's header before any pixel is decoded: this bounds the memory and time one decode
/// can take.
pub const MAX_PIXELS: u64 = 50_000_000;

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

/// Decodes a JPEG or PNG file. Anything else, and corrupt or truncated data, is an
/// `InvalidImageFormatException` (never a partial image, which the decoders would otherwise
/// fill in with grey); an image under 80 pixels a side an `InvalidParameterException`; one
/// over [`MAX_SIDE`] a side or [`MAX_PIXELS`] in all an `ImageTooLargeException`, before it is
/// decoded.
pub fn decode(bytes: &[u8]) -> Result<DecodedImage, RekognitionError> {
    let format = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageFormat::Jpeg
    } else if bytes.starts_with(PNG_SIGNATURE) {
        ImageFormat::Png
    } else {
        return Err(invalid_format());
    };
    let complete = match format {
        ImageFormat::Jpeg => jpeg_is_complete(bytes),
        _ => png_is_complete(bytes),
    };
    if !complete {
        return Err(invalid_format());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1024 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|error| decode_error(&error))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(RekognitionError::new(
            ErrorCode::ImageTooLarge,
            format!("Image size is too large: {width}x{height} pixels; the limit is {MAX_PIXELS} pixels"),
        ));
    }
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

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Whether a JPEG's structure runs whole from its start to its end-of-image marker: every
/// segment's length within the data, and the compressed data of every scan followed by a
/// marker. A file cut anywhere before `FF D9` is incomplete. Bytes after the end-of-image
/// marker (some cameras append data there) do not matter.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // past SOI
    loop {
        // A marker: 0xFF (any number of fill bytes), then its code.
        if bytes.get(at) != Some(&0xFF) {
            return false;
        }
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&code) = bytes.get(at) else { return false };
        at += 1;
        match code {
            0xD9 => return true,            // EOI
            0x01 | 0xD0..=0xD7 => continue, // markers without a length
            _ => {}
        }
        let Some(length) = bytes.get(at..at + 2).map(|pair| usize::from(u16::from_be_bytes([pair[0], pair[1]]))) else {
            return false;
        };
        if length < 2 {
            return false;
        }
        at += length;
        if at > bytes.len() {
            return false;
        }
        if code == 0xDA {
            // Start of scan: compressed data up to the next marker that is neither a stuffed
            // zero nor a restart marker.
            loop {
                let Some(offset) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) else {
                    return false;
                };
                at += offset;
                match bytes.get(at + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => at += 2,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Whether a PNG holds its `IEND` chunk (with its fixed CRC): the chunks before it, image
/// data included, are then whole, since the decoder checks each one's length and CRC.
fn png_is_complete(bytes: &[u8]) -> bool {
    const IEND: &[u8] = b"\0\0\0\0IEND\xAE\x42\x60\x82";
    bytes.len() >= PNG_SIGNATURE.len() + IEND.len()
        && bytes[PNG_SIGNATURE.len()..].windows(IEND.len()).any(|window| window == IEND)
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

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        image.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg).unwrap();
        out
    }

    #[test]
    fn a_jpeg_cut_anywhere_before_its_end_is_an_invalid_format_never_a_partial_image() {
        let whole = jpeg(200, 160);
        assert!(decode(&whole).is_ok());
        for cut in [whole.len() - 1, whole.len() - 2, whole.len() * 3 / 4, whole.len() / 2, 700, 20, 4] {
            let error = decode(&whole[..cut]).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidImageFormat, "cut at {cut} of {}", whole.len());
        }
    }

    #[test]
    fn bytes_after_a_jpegs_end_do_not_matter() {
        let mut trailed = jpeg(120, 90);
        trailed.extend_from_slice(b"trailing camera data");
        assert!(decode(&trailed).is_ok());
    }

    #[test]
    fn a_png_cut_before_its_end_is_an_invalid_format() {
        let whole = png(300, 200);
        assert!(decode(&whole).is_ok());
        for cut in [whole.len() - 1, whole.len() - 12, whole.len() / 2, 60] {
            assert_eq!(decode(&whole[..cut]).unwrap_err().code, ErrorCode::InvalidImageFormat, "cut at {cut}");
        }
    }

    /// A PNG chunk: length, type, data and CRC.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [(data.len() as u32).to_be_bytes().as_slice(), kind.as_slice(), data, crc.sum().to_be_bytes().as_slice()]
            .concat()
    }

    #[test]
    fn an_image_over_the_pixel_bound_is_refused_from_its_header_before_decoding() {
        // A 9000x9000 RGB header (81 megapixels) over a few bytes that decode to no image at
        // all: refused as too large, so only the header can have been read.
        let header = [9000u32.to_be_bytes(), 9000u32.to_be_bytes()].concat();
        let ihdr = [header.as_slice(), [8u8, 2, 0, 0, 0].as_slice()].concat();
        let bytes = [
            PNG_SIGNATURE,
            chunk(b"IHDR", &ihdr).as_slice(),
            chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]).as_slice(),
            chunk(b"IEND", &[]).as_slice(),
        ]
        .concat();
        let error = decode(&bytes).unwrap_err();
        assert_eq!(error.code, ErrorCode::ImageTooLarge);
        assert!(error.message.contains("9000x9000"), "{}", error.message);
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
