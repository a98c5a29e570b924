//! The DetectFaces pipeline: BlazeFace finds faces; each face is cropped whole (BlazeFace's
//! box stops at the eyebrows) and given to face-api's expression and age/gender networks.

use std::time::{Duration, Instant};

use anyhow::Result;
use image::RgbImage;

use crate::api::{
    AgeRange, AttributeSet, BoundingBox, DetectFacesResponse, Emotion, FaceDetail, Gender, Landmark, Pose, Quality,
};
use crate::detector::{BlazeFace, DetectOptions, Detection};
use crate::faceapi::{self, AgeGenderNet, ExpressionNet, TinyFaceDetector};
use crate::input::DecodedImage;
use crate::models::ModelPaths;

/// Rekognition returns at most the 100 largest faces.
pub const MAX_FACES: usize = 100;

/// How far the face box is extended above BlazeFace's box, as a fraction of its height, to
/// take in the forehead (Rekognition's boxes and face-api's crops include it).
pub const FOREHEAD: f32 = 0.29;
/// How much wider than BlazeFace's box the crop given to the face-api networks is (total).
pub const CROP_WIDEN: f32 = 0.10;

/// face-api's expression classes mapped to Rekognition's emotion types (same order as
/// [`faceapi::EXPRESSIONS`]). No model here has CONFUSED: it is reported at 0.
pub const EMOTION_TYPES: [&str; 7] = ["CALM", "HAPPY", "SAD", "ANGRY", "FEAR", "DISGUSTED", "SURPRISED"];

/// When a BlazeFace candidate counts as a face.
///
/// BlazeFace alone takes some non-faces for faces (the bundled cat photo scores 0.79, the
/// coffee cup 0.70, while the astronaut scores 0.71–0.90 depending on blur and size). So a
/// candidate is confirmed by a second, independently trained detector, face-api's
/// TinyFaceDetector, run on a square crop twice the face's size around it; a candidate that
/// BlazeFace is very sure of is kept without confirmation (TinyFaceDetector only knows
/// upright faces, BlazeFace also finds faces turned sideways).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confirmation {
    /// Minimum TinyFaceDetector score of an overlapping (IoU >= 0.3) box that confirms.
    pub min_confirm_score: f32,
    /// BlazeFace score from which no confirmation is needed.
    pub accept_unconfirmed: f32,
    /// TinyFaceDetector's input size (a multiple of 32).
    pub input_size: u32,
}

impl Default for Confirmation {
    fn default() -> Self {
        Self { min_confirm_score: 0.5, accept_unconfirmed: 0.85, input_size: 160 }
    }
}

/// The loaded models. Load once, share (`&self` everywhere; `Send + Sync`).
#[derive(Debug, Clone)]
pub struct Analyzer {
    detector: BlazeFace,
    confirmer: TinyFaceDetector,
    expression: ExpressionNet,
    age_gender: AgeGenderNet,
    pub options: DetectOptions,
    pub confirmation: Confirmation,
}

/// How long the parts of one analysis took.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub detect: Duration,
    /// Per face: expression network, then age/gender network (zero when not asked for).
    pub per_face: Vec<(Duration, Duration)>,
}

impl Analyzer {
    pub fn load(paths: &ModelPaths) -> Result<Self> {
        Ok(Self {
            detector: BlazeFace::load(&paths.blazeface)?,
            confirmer: TinyFaceDetector::load(paths)?,
            expression: ExpressionNet::load(paths)?,
            age_gender: AgeGenderNet::load(paths)?,
            options: DetectOptions::default(),
            confirmation: Confirmation::default(),
        })
    }

    /// Whether a candidate is a face (see [`Confirmation`]).
    pub fn confirmed(&self, image: &RgbImage, d: &Detection) -> bool {
        let c = &self.confirmation;
        if d.score >= c.accept_unconfirmed {
            return true;
        }
        // The whole-face box, and a square twice its size around it (black outside the image).
        let (top, bottom) = (d.cy - d.h / 2.0 - FOREHEAD * d.h, d.cy + d.h / 2.0);
        let (cx, cy, w, h) = (d.cx, (top + bottom) / 2.0, d.w, bottom - top);
        let side = (2.0 * w.max(h)).round().max(8.0);
        let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
        let mut square = RgbImage::new(side as u32, side as u32);
        image::imageops::replace(&mut square, image, -(x0.round() as i64), -(y0.round() as i64));
        let size = c.input_size;
        let square = image::imageops::resize(&square, size, size, image::imageops::FilterType::Triangle);
        let face = ((cx - w / 2.0 - x0) / side, (top - y0) / side, (cx + w / 2.0 - x0) / side, (bottom - y0) / side);
        self.confirmer.detect(&square, size as usize, c.min_confirm_score).iter().any(|t| {
            let iw = (t.x1.min(face.2) - t.x0.max(face.0)).max(0.0);
            let ih = (t.y1.min(face.3) - t.y0.max(face.1)).max(0.0);
            let inter = iw * ih;
            let union = (t.x1 - t.x0) * (t.y1 - t.y0) + (face.2 - face.0) * (face.3 - face.1) - inter;
            union > 0.0 && inter / union >= 0.3
        })
    }

    pub fn detect_faces(&self, image: &DecodedImage, attributes: AttributeSet) -> Result<DetectFacesResponse> {
        Ok(self.detect_faces_timed(image, attributes)?.0)
    }

    pub fn detect_faces_timed(
        &self,
        image: &DecodedImage,
        attributes: AttributeSet,
    ) -> Result<(DetectFacesResponse, Timings)> {
        let start = Instant::now();
        let mut detections = self.detector.detect(&image.image, &self.options)?;
        detections.retain(|d| self.confirmed(&image.image, d));
        let mut timings = Timings { detect: start.elapsed(), ..Default::default() };
        // The 100 largest, largest first.
        detections.sort_by(|a, b| (b.w * b.h).total_cmp(&(a.w * a.h)));
        detections.truncate(MAX_FACES);
        let face_details = detections
            .iter()
            .map(|detection| {
                let (face, times) = self.face_detail(&image.image, detection, attributes);
                timings.per_face.push(times);
                face
            })
            .collect();
        Ok((
            DetectFacesResponse {
                face_details,
                orientation_correction: image.orientation_correction.map(str::to_string),
            },
            timings,
        ))
    }

    fn face_detail(
        &self,
        image: &RgbImage,
        d: &Detection,
        attributes: AttributeSet,
    ) -> (FaceDetail, (Duration, Duration)) {
        let (iw, ih) = (image.width() as f32, image.height() as f32);
        let top = d.cy - d.h / 2.0 - FOREHEAD * d.h;
        let bottom = d.cy + d.h / 2.0;
        let bounding_box =
            BoundingBox { width: d.w / iw, height: (bottom - top) / ih, left: (d.cx - d.w / 2.0) / iw, top: top / ih };
        let half_width = d.w * (1.0 + CROP_WIDEN) / 2.0;
        let crop = crop(image, d.cx - half_width, top, d.cx + half_width, bottom);
        let mut face = FaceDetail {
            bounding_box,
            landmarks: landmarks(d, iw, ih),
            pose: Pose { roll: Some(roll(d)) },
            quality: Quality { brightness: crop.as_ref().map(brightness) },
            confidence: d.score * 100.0,
            ..Default::default()
        };
        let mut times = (Duration::ZERO, Duration::ZERO);
        let Some(crop) = crop else {
            return (face, times);
        };
        if attributes.emotions || attributes.age_range || attributes.gender {
            let input = faceapi::input_tensor(&crop);
            if attributes.emotions {
                let start = Instant::now();
                face.emotions = Some(emotions(&self.expression.predict(&input)));
                times.0 = start.elapsed();
            }
            if attributes.age_range || attributes.gender {
                let start = Instant::now();
                let estimate = self.age_gender.predict(&input);
                times.1 = start.elapsed();
                if attributes.age_range {
                    face.age_range = Some(age_range(estimate.age));
                }
                if attributes.gender {
                    let male = estimate.male_probability >= 0.5;
                    face.gender = Some(Gender {
                        value: if male { "Male" } else { "Female" }.into(),
                        confidence: 100.0
                            * if male { estimate.male_probability } else { 1.0 - estimate.male_probability },
                    });
                }
            }
        }
        (face, times)
    }
}

/// The region, clipped to the image (as face-api clips its face boxes); `None` when nothing
/// of it is inside.
fn crop(image: &RgbImage, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<RgbImage> {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let (x0, y0) = (x0.round().clamp(0.0, w) as u32, y0.round().clamp(0.0, h) as u32);
    let (x1, y1) = (x1.round().clamp(0.0, w) as u32, y1.round().clamp(0.0, h) as u32);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    Some(image::imageops::crop_imm(image, x0, y0, x1 - x0, y1 - y0).to_image())
}

/// Softmax probabilities as Rekognition emotions, in percent, highest first, with CONFUSED at 0.
pub fn emotions(probabilities: &[f32; 7]) -> Vec<Emotion> {
    let mut emotions: Vec<Emotion> = EMOTION_TYPES
        .iter()
        .zip(probabilities)
        .map(|(name, p)| Emotion { r#type: (*name).into(), confidence: p * 100.0 })
        .chain(std::iter::once(Emotion { r#type: "CONFUSED".into(), confidence: 0.0 }))
        .collect();
    emotions.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    emotions
}

/// The age network gives a point estimate; the range is that estimate ± max(3, 15 %) years,
/// rounded outwards.
pub fn age_range(age: f32) -> AgeRange {
    let age = age.max(0.0);
    let half = (0.15 * age).max(3.0);
    AgeRange { low: (age - half).floor().max(0.0) as i32, high: (age + half).ceil() as i32 }
}

/// BlazeFace's eyes and nose tip. Rekognition's `eyeLeft` is the eye on the image's left.
/// The mouth centre and the ear tragions have no Rekognition counterpart and are left out.
fn landmarks(d: &Detection, iw: f32, ih: f32) -> Vec<Landmark> {
    let (a, b) = (d.keypoints[0], d.keypoints[1]);
    let (left, right) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    [("eyeLeft", left), ("eyeRight", right), ("nose", d.keypoints[2])]
        .into_iter()
        .map(|(name, (x, y))| Landmark { r#type: name.into(), x: x / iw, y: y / ih })
        .collect()
}

/// The angle of the line from the left eye to the right eye, in degrees, positive when the
/// face is turned clockwise in the image.
fn roll(d: &Detection) -> f32 {
    let (a, b) = (d.keypoints[0], d.keypoints[1]);
    let (left, right) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    (right.1 - left.1).atan2(right.0 - left.0).to_degrees()
}

/// Mean luma (ITU-R BT.601) of the face crop, 0 (black) to 100 (white).
fn brightness(crop: &RgbImage) -> f32 {
    let sum: f64 = crop.pixels().map(|p| 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64).sum();
    (sum / (crop.width() as f64 * crop.height() as f64) / 255.0 * 100.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emotions_are_percentages_highest_first_with_confused_at_zero() {
        let e = emotions(&[0.1, 0.6, 0.05, 0.05, 0.1, 0.05, 0.05]);
        assert_eq!(e.len(), 8);
        assert_eq!(e[0].r#type, "HAPPY");
        assert!((e[0].confidence - 60.0).abs() < 1e-4);
        assert_eq!(e.last().unwrap().r#type, "CONFUSED");
        let sum: f32 = e.iter().map(|e| e.confidence).sum();
        assert!((sum - 100.0).abs() < 1e-3);
    }

    #[test]
    fn age_range_is_an_interval_around_the_estimate() {
        assert_eq!(age_range(30.0), AgeRange { low: 25, high: 35 });
        assert_eq!(age_range(10.0), AgeRange { low: 7, high: 13 });
        assert_eq!(age_range(-2.0), AgeRange { low: 0, high: 3 });
    }
}
