//! MediaPipe BlazeFace, the "back" (short- and mid-range) 256x256 model, run with tract.
//!
//! Decoding follows keijiro's BlazeFaceBarracuda post-processing (the package the ONNX file
//! comes from): two anchor grids (16x16 with 2 anchors, 8x8 with 6), offsets in input pixels,
//! sigmoid scores, then MediaPipe's weighted non-maximum suppression (IoU 0.3).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use image::imageops::FilterType;
use image::{GenericImageView, RgbImage};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// The model's input side.
pub const INPUT: u32 = 256;
const IOU_THRESHOLD: f32 = 0.3;

/// One face found by the detector, in pixels of the image it was run on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Sigmoid score, 0..1.
    pub score: f32,
    /// Box centre and size. BlazeFace's box spans the eyebrows to the chin.
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    /// The six key points, in the model's order: the eye on the image's left, the eye on the
    /// image's right, nose tip, mouth centre, the ear tragion on the image's left, the one on
    /// the image's right (MediaPipe calls the first the subject's right eye).
    pub keypoints: [(f32, f32); 6],
}

impl Detection {
    fn iou(&self, other: &Detection) -> f32 {
        let (ax0, ay0, ax1, ay1) =
            (self.cx - self.w / 2.0, self.cy - self.h / 2.0, self.cx + self.w / 2.0, self.cy + self.h / 2.0);
        let (bx0, by0, bx1, by1) =
            (other.cx - other.w / 2.0, other.cy - other.h / 2.0, other.cx + other.w / 2.0, other.cy + other.h / 2.0);
        let iw = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
        let ih = (ay1.min(by1) - ay0.max(by0)).max(0.0);
        let inter = iw * ih;
        let union = self.w * self.h + other.w * other.h - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    fn to_array(self) -> [f32; 16] {
        let mut a = [0.0; 16];
        a[..4].copy_from_slice(&[self.cx, self.cy, self.w, self.h]);
        for (i, (x, y)) in self.keypoints.iter().enumerate() {
            a[4 + 2 * i] = *x;
            a[5 + 2 * i] = *y;
        }
        a
    }

    fn from_array(a: [f32; 16], score: f32) -> Self {
        let mut keypoints = [(0.0, 0.0); 6];
        for (i, k) in keypoints.iter_mut().enumerate() {
            *k = (a[4 + 2 * i], a[5 + 2 * i]);
        }
        Self { score, cx: a[0], cy: a[1], w: a[2], h: a[3], keypoints }
    }

    fn map(self, f: impl Fn(f32, f32) -> (f32, f32), scale: f32) -> Self {
        let (cx, cy) = f(self.cx, self.cy);
        let mut keypoints = self.keypoints;
        for k in keypoints.iter_mut() {
            *k = f(k.0, k.1);
        }
        Self { cx, cy, w: self.w * scale, h: self.h * scale, keypoints, ..self }
    }
}

/// How the detector looks at an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Minimum score (0..1) of a candidate face (MediaPipe's default, 0.5).
    pub min_score: f32,
    /// Side, in image pixels, of the overlapping tiles that are searched in addition to the
    /// whole image, so that faces too small to be seen in the downscaled whole image are
    /// found. Tiling is used only when the image's longer side exceeds 1.5 tiles; 0 disables it.
    /// At 384 px, faces of about 30 px are found.
    pub tile: u32,
    /// At most this many tiles are searched: on larger images the tiles grow (by 25 % steps)
    /// until they fit, and the smallest face found grows with them.
    pub max_tiles: u32,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self { min_score: 0.5, tile: 384, max_tiles: 24 }
    }
}

/// The loaded BlazeFace model. Cheap to share: inference takes `&self`.
#[derive(Clone)]
pub struct BlazeFace {
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for BlazeFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlazeFace")
    }
}

impl BlazeFace {
    /// Loads and optimizes the ONNX model.
    pub fn load(path: &Path) -> Result<Self> {
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_path(path).with_context(|| format!("reading {}", path.display()))?;
        give_constant_of_shape_a_float_value(&mut proto);
        let model = onnx
            .model_for_proto_model(&proto)
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .with_context(|| format!("loading the BlazeFace model {}", path.display()));
        clear_upper_vector_state();
        Ok(Self { plan: model? })
    }

    /// Faces in `image`, in its pixel coordinates, after non-maximum suppression.
    pub fn detect(&self, image: &RgbImage, options: &DetectOptions) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        let mut candidates = self.detect_region(image, 0, 0, width, height, options.min_score)?;
        let longer = width.max(height);
        if options.tile > 0 && longer as f32 > 1.5 * options.tile as f32 {
            let mut tile = options.tile.max(INPUT / 2);
            while (tile_origins(width, tile, tile * 3 / 4).len() * tile_origins(height, tile, tile * 3 / 4).len())
                as u32
                > options.max_tiles.max(1)
            {
                tile += tile / 4;
            }
            let tile = tile.min(width).min(height);
            let stride = (tile * 3 / 4).max(1);
            for y in tile_origins(height, tile, stride) {
                for x in tile_origins(width, tile, stride) {
                    let (tw, th) = (tile.min(width - x), tile.min(height - y));
                    let found = self.detect_region(image, x, y, tw, th, options.min_score)?;
                    // A face cut by an inner tile edge is seen whole by a neighbouring tile.
                    let margin = 2.0;
                    candidates.extend(found.into_iter().filter(|d| {
                        let (x0, y0, x1, y1) = (d.cx - d.w / 2.0, d.cy - d.h / 2.0, d.cx + d.w / 2.0, d.cy + d.h / 2.0);
                        (x == 0 || x0 > x as f32 + margin)
                            && (y == 0 || y0 > y as f32 + margin)
                            && (x + tw == width || x1 < (x + tw) as f32 - margin)
                            && (y + th == height || y1 < (y + th) as f32 - margin)
                    }));
                }
            }
        }
        Ok(weighted_nms(candidates))
    }

    /// Runs the model on one region, letterboxed into the 256x256 input; candidates before
    /// suppression, in image pixels.
    fn detect_region(
        &self,
        image: &RgbImage,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        min_score: f32,
    ) -> Result<Vec<Detection>> {
        let scale = INPUT as f32 / w.max(h) as f32;
        let (rw, rh) =
            (((w as f32 * scale).round() as u32).clamp(1, INPUT), ((h as f32 * scale).round() as u32).clamp(1, INPUT));
        let region = image.view(x, y, w, h).to_image();
        let resized = if w >= 4 * rw {
            image::imageops::thumbnail(&region, rw, rh)
        } else {
            image::imageops::resize(&region, rw, rh, FilterType::Triangle)
        };

        let (ox, oy) = ((INPUT - rw) / 2, (INPUT - rh) / 2);
        let side = INPUT as usize;
        let mut input = vec![-1.0f32; side * side * 3];
        for (px, py, pixel) in resized.enumerate_pixels() {
            let base = (((py + oy) as usize) * side + (px + ox) as usize) * 3;
            for c in 0..3 {
                input[base + c] = pixel.0[c] as f32 / 127.5 - 1.0;
            }
        }
        let tensor = Tensor::from_shape(&[1, side, side, 3], &input)?;
        let outputs = self.plan.run(tvec!(tensor.into()));
        clear_upper_vector_state();
        let outputs = outputs?;
        let mut found = Vec::new();
        decode(&outputs[0], &outputs[2], 16, 2, min_score, &mut found)?;
        decode(&outputs[1], &outputs[3], 8, 6, min_score, &mut found)?;
        // Input-normalized coordinates to image pixels.
        let to_image = |u: f32, v: f32| {
            ((u * INPUT as f32 - ox as f32) / scale + x as f32, (v * INPUT as f32 - oy as f32) / scale + y as f32)
        };
        Ok(found.into_iter().map(|d| d.map(to_image, INPUT as f32 / scale)).collect())
    }
}

/// tract's AVX kernels can return with the upper halves of the YMM registers dirty; on many
/// x86 CPUs every later SSE instruction (the rest of this crate is compiled for baseline
/// x86-64) then pays a transition penalty, which made the face-api networks run 2.5 times
/// slower after the first detection. `vzeroupper` clears that state.
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        unsafe fn zero_upper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX, checked just above.
            unsafe { zero_upper() }
        }
    }
}

/// Tile origins along one axis: evenly spread, the last tile flush with the end.
fn tile_origins(length: u32, tile: u32, stride: u32) -> Vec<u32> {
    if length <= tile {
        return vec![0];
    }
    let count = (length - tile).div_ceil(stride) + 1;
    (0..count).map(|i| ((length - tile) as u64 * i as u64 / (count - 1) as u64) as u32).collect()
}

/// Decodes one anchor grid; coordinates normalized to the model input.
fn decode(
    scores: &TValue,
    boxes: &TValue,
    cells: usize,
    anchors: usize,
    min_score: f32,
    out: &mut Vec<Detection>,
) -> Result<()> {
    let scores = scores.try_as_plain_ram()?;
    let scores = scores.as_slice::<f32>()?;
    let boxes = boxes.try_as_plain_ram()?;
    let boxes = boxes.as_slice::<f32>()?;
    anyhow::ensure!(
        scores.len() == cells * cells * anchors && boxes.len() == scores.len() * 16,
        "unexpected BlazeFace output shape"
    );
    let inv = 1.0 / INPUT as f32;
    for cy in 0..cells {
        for cx in 0..cells {
            let (ax, ay) = ((cx as f32 + 0.5) / cells as f32, (cy as f32 + 0.5) / cells as f32);
            for a in 0..anchors {
                let index = (cy * cells + cx) * anchors + a;
                let score = 1.0 / (1.0 + (-scores[index].clamp(-100.0, 100.0)).exp());
                if score < min_score {
                    continue;
                }
                let b = &boxes[index * 16..index * 16 + 16];
                let mut keypoints = [(0.0, 0.0); 6];
                for (k, point) in keypoints.iter_mut().enumerate() {
                    *point = (ax + b[4 + 2 * k] * inv, ay + b[5 + 2 * k] * inv);
                }
                out.push(Detection {
                    score,
                    cx: ax + b[0] * inv,
                    cy: ay + b[1] * inv,
                    w: b[2] * inv,
                    h: b[3] * inv,
                    keypoints,
                });
            }
        }
    }
    Ok(())
}

/// MediaPipe's weighted non-maximum suppression: the best remaining candidate and all that
/// overlap it by IoU >= 0.3 are merged into their score-weighted mean, with the best score.
pub fn weighted_nms(mut candidates: Vec<Detection>) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    let mut used = vec![false; candidates.len()];
    for i in 0..candidates.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let best = candidates[i];
        let mut sum = best.to_array().map(|v| v * best.score);
        let mut weight = best.score;
        for j in i + 1..candidates.len() {
            if !used[j] && best.iou(&candidates[j]) >= IOU_THRESHOLD {
                used[j] = true;
                let c = candidates[j];
                for (s, v) in sum.iter_mut().zip(c.to_array()) {
                    *s += v * c.score;
                }
                weight += c.score;
            }
        }
        kept.push(Detection::from_array(sum.map(|v| v / weight), best.score));
    }
    kept
}

/// The model's `ConstantOfShape` nodes have no `value` attribute, for which ONNX means a
/// float32 zero; tract assumes a 64-bit float and then fails to unify F32 with F64. Giving
/// them an explicit float32 zero fixes that.
fn give_constant_of_shape_a_float_value(proto: &mut pb::ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for node in graph.node.iter_mut().filter(|node| node.op_type == "ConstantOfShape") {
        if node.attribute.iter().any(|attribute| attribute.name == "value") {
            continue;
        }
        node.attribute.push(pb::AttributeProto {
            name: "value".into(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(pb::TensorProto {
                dims: vec![1],
                data_type: pb::tensor_proto::DataType::Float as i32,
                float_data: vec![0.0],
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(score: f32, cx: f32, cy: f32, size: f32) -> Detection {
        Detection { score, cx, cy, w: size, h: size, keypoints: [(cx, cy); 6] }
    }

    #[test]
    fn overlapping_candidates_merge_into_their_weighted_mean() {
        let kept =
            weighted_nms(vec![det(0.5, 12.0, 10.0, 10.0), det(0.9, 10.0, 10.0, 10.0), det(0.8, 100.0, 100.0, 10.0)]);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        let expected = (10.0 * 0.9 + 12.0 * 0.5) / 1.4;
        assert!((kept[0].cx - expected).abs() < 1e-4);
        assert_eq!(kept[1].cx, 100.0);
    }

    #[test]
    fn tiles_cover_the_axis_and_end_flush() {
        assert_eq!(tile_origins(400, 512, 384), vec![0]);
        let origins = tile_origins(1920, 512, 384);
        assert_eq!(origins.first(), Some(&0));
        assert_eq!(origins.last(), Some(&(1920 - 512)));
        assert!(origins.windows(2).all(|w| w[1] - w[0] <= 384));
    }
}
