//! face-api's face expression network and age/gender network (from `@vladmandic/face-api`,
//! MIT), ported from its TypeScript (`src/faceFeatureExtractor`, `src/faceExpressionNet`,
//! `src/xception`, `src/ageGenderNet`) to plain Rust over [`crate::tfjs`].

use anyhow::Result;
use image::RgbImage;

use crate::models::ModelPaths;
use crate::tfjs::{
    self, add, conv1x1, conv1x1_stride2, conv3x3, conv3x3_valid, global_avg_pool7, leaky, max_pool2x2, max_pool3x3_s2,
    relu, separable, Conv1x1, Conv3x3, Dense, SeparableConv, Tensor3, WeightMap,
};

/// The networks' input side.
pub const INPUT_SIZE: usize = 112;
/// face-api's per-channel mean, subtracted before dividing by 255.
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// The expression classes, in the network's output order.
pub const EXPRESSIONS: [&str; 7] = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"];

/// face-api's input pipeline for one face crop: pad to a square with zeros (centered), resize
/// to 112x112 with TensorFlow's bilinear resize (`alignCorners = false`,
/// `halfPixelCenters = false`), subtract the mean and divide by 255.
pub fn input_tensor(crop: &RgbImage) -> Tensor3 {
    net_input(crop, INPUT_SIZE, MEAN_RGB, true)
}

/// face-api's `toBatchTensor(size, centered)`, mean subtraction and division by 255.
fn net_input(crop: &RgbImage, size: usize, mean: [f32; 3], centered: bool) -> Tensor3 {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    let side = w.max(h);
    // padToSquare: centered, `round(diff / 2)` after and the rest before; otherwise all after.
    let diff = w.abs_diff(h);
    let after = if centered { ((diff as f64) * 0.5).round() as usize } else { diff };
    let before = diff - after;
    let (off_x, off_y) = if h > w { (before, 0) } else { (0, before) };
    let pixel = |x: usize, y: usize| -> [f32; 3] {
        if x < off_x || y < off_y || x >= off_x + w || y >= off_y + h {
            [0.0; 3]
        } else {
            let p = crop.get_pixel((x - off_x) as u32, (y - off_y) as u32).0;
            [p[0] as f32, p[1] as f32, p[2] as f32]
        }
    };
    let scale = side as f32 / size as f32;
    let mut out = Tensor3::zeros(size, size, 3);
    for oy in 0..size {
        let sy = oy as f32 * scale;
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(side - 1);
        let fy = sy - y0 as f32;
        for ox in 0..size {
            let sx = ox as f32 * scale;
            let x0 = sx.floor() as usize;
            let x1 = (x0 + 1).min(side - 1);
            let fx = sx - x0 as f32;
            let (tl, tr, bl, br) = (pixel(x0, y0), pixel(x1, y0), pixel(x0, y1), pixel(x1, y1));
            for c in 0..3 {
                let top = tl[c] + (tr[c] - tl[c]) * fx;
                let bottom = bl[c] + (br[c] - bl[c]) * fx;
                let v = top + (bottom - top) * fy;
                out.data[(oy * size + ox) * 3 + c] = (v - mean[c]) / 255.0;
            }
        }
    }
    out
}

/// One dense block of `FaceFeatureExtractor` (`denseBlock4`).
#[derive(Debug, Clone)]
struct DenseBlock {
    first: Option<Conv3x3>,
    conv0: Option<SeparableConv>,
    conv1: SeparableConv,
    conv2: SeparableConv,
    conv3: SeparableConv,
}

impl DenseBlock {
    fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize, first: bool) -> Result<Self> {
        let (first, conv0) = if first {
            (Some(Conv3x3::load(map, &format!("{prefix}/conv0"), cin, cout)?), None)
        } else {
            (None, Some(SeparableConv::load(map, &format!("{prefix}/conv0"), cin, cout)?))
        };
        Ok(Self {
            first,
            conv0,
            conv1: SeparableConv::load(map, &format!("{prefix}/conv1"), cout, cout)?,
            conv2: SeparableConv::load(map, &format!("{prefix}/conv2"), cout, cout)?,
            conv3: SeparableConv::load(map, &format!("{prefix}/conv3"), cout, cout)?,
        })
    }

    fn forward(&self, x: &Tensor3) -> Tensor3 {
        let out1 = relu(match (&self.first, &self.conv0) {
            (Some(conv), _) => conv3x3(x, conv, 2),
            (None, Some(conv)) => separable(x, conv, 2),
            (None, None) => unreachable!("a dense block has a first convolution"),
        });
        let out2 = separable(&out1, &self.conv1, 1);
        let in3 = relu(add(&[&out1, &out2]));
        let out3 = separable(&in3, &self.conv2, 1);
        let in4 = relu(add(&[&out1, &out2, &out3]));
        let out4 = separable(&in4, &self.conv3, 1);
        relu(add(&[&out1, &out2, &out3, &out4]))
    }
}

/// face-api's `FaceExpressionNet`: `FaceFeatureExtractor` (four dense blocks), 7x7 average
/// pooling, a 256x7 fully connected layer and softmax.
#[derive(Debug, Clone)]
pub struct ExpressionNet {
    blocks: [DenseBlock; 4],
    fc: Dense,
}

impl ExpressionNet {
    pub fn load(paths: &ModelPaths) -> Result<Self> {
        let mut map = WeightMap::load(&paths.expression_manifest, &paths.expression_weights)?;
        Ok(Self {
            blocks: [
                DenseBlock::load(&mut map, "dense0", 3, 32, true)?,
                DenseBlock::load(&mut map, "dense1", 32, 64, false)?,
                DenseBlock::load(&mut map, "dense2", 64, 128, false)?,
                DenseBlock::load(&mut map, "dense3", 128, 256, false)?,
            ],
            fc: Dense::load(&mut map, "fc", 256, 7)?,
        })
    }

    /// Probabilities of [`EXPRESSIONS`], from an input made by [`input_tensor`].
    pub fn predict(&self, input: &Tensor3) -> [f32; 7] {
        let mut x = self.blocks[0].forward(input);
        for block in &self.blocks[1..] {
            x = block.forward(&x);
        }
        let pooled = global_avg_pool7(&x);
        let probabilities = tfjs::softmax(&self.fc.forward(&pooled));
        probabilities.try_into().expect("seven classes")
    }
}

#[derive(Debug, Clone)]
struct ReductionBlock {
    separable0: SeparableConv,
    separable1: SeparableConv,
    expansion: Conv1x1,
}

impl ReductionBlock {
    fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            separable0: SeparableConv::load(map, &format!("{prefix}/separable_conv0"), cin, cout)?,
            separable1: SeparableConv::load(map, &format!("{prefix}/separable_conv1"), cout, cout)?,
            expansion: Conv1x1::load(map, &format!("{prefix}/expansion_conv"), cin, cout)?,
        })
    }

    fn forward(&self, x: &Tensor3, activate_input: bool) -> Tensor3 {
        let input = if activate_input { relu(x.clone()) } else { x.clone() };
        let out = separable(&input, &self.separable0, 1);
        let out = separable(&relu(out), &self.separable1, 1);
        let out = max_pool3x3_s2(&out);
        add(&[&out, &conv1x1_stride2(x, &self.expansion)])
    }
}

#[derive(Debug, Clone)]
struct MainBlock([SeparableConv; 3]);

impl MainBlock {
    fn load(map: &mut WeightMap, prefix: &str, channels: usize) -> Result<Self> {
        Ok(Self([
            SeparableConv::load(map, &format!("{prefix}/separable_conv0"), channels, channels)?,
            SeparableConv::load(map, &format!("{prefix}/separable_conv1"), channels, channels)?,
            SeparableConv::load(map, &format!("{prefix}/separable_conv2"), channels, channels)?,
        ]))
    }

    fn forward(&self, x: &Tensor3) -> Tensor3 {
        let mut out = x.clone();
        for conv in &self.0 {
            out = separable(&relu(out), conv, 1);
        }
        add(&[&out, x])
    }
}

/// What the age/gender network says about one face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgeGender {
    /// A point estimate in years.
    pub age: f32,
    /// Probability that the face is male (face-api's first gender output).
    pub male_probability: f32,
}

/// face-api's `AgeGenderNet`: `TinyXception` with two main blocks, 7x7 average pooling, and
/// two fully connected heads (age regression; gender, softmax).
#[derive(Debug, Clone)]
pub struct AgeGenderNet {
    conv_in: Conv3x3,
    reduction0: ReductionBlock,
    reduction1: ReductionBlock,
    main: [MainBlock; 2],
    exit_reduction: ReductionBlock,
    exit_separable: SeparableConv,
    fc_age: Dense,
    fc_gender: Dense,
}

impl AgeGenderNet {
    pub fn load(paths: &ModelPaths) -> Result<Self> {
        let mut map = WeightMap::load(&paths.age_gender_manifest, &paths.age_gender_weights)?;
        Ok(Self {
            conv_in: Conv3x3::load(&mut map, "entry_flow/conv_in", 3, 32)?,
            reduction0: ReductionBlock::load(&mut map, "entry_flow/reduction_block_0", 32, 64)?,
            reduction1: ReductionBlock::load(&mut map, "entry_flow/reduction_block_1", 64, 128)?,
            main: [
                MainBlock::load(&mut map, "middle_flow/main_block_0", 128)?,
                MainBlock::load(&mut map, "middle_flow/main_block_1", 128)?,
            ],
            exit_reduction: ReductionBlock::load(&mut map, "exit_flow/reduction_block", 128, 256)?,
            exit_separable: SeparableConv::load(&mut map, "exit_flow/separable_conv", 256, 512)?,
            fc_age: Dense::load(&mut map, "fc/age", 512, 1)?,
            fc_gender: Dense::load(&mut map, "fc/gender", 512, 2)?,
        })
    }

    pub fn predict(&self, input: &Tensor3) -> AgeGender {
        let mut x = relu(conv3x3(input, &self.conv_in, 2));
        x = self.reduction0.forward(&x, false);
        x = self.reduction1.forward(&x, true);
        for block in &self.main {
            x = block.forward(&x);
        }
        x = self.exit_reduction.forward(&x, true);
        x = relu(separable(&x, &self.exit_separable, 1));
        let pooled = global_avg_pool7(&x);
        let age = self.fc_age.forward(&pooled)[0];
        let gender = tfjs::softmax(&self.fc_gender.forward(&pooled));
        AgeGender { age, male_probability: gender[0] }
    }
}

/// A face found by [`TinyFaceDetector`]: score and box, as fractions of the input square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TinyDetection {
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// face-api's `TinyFaceDetector`: a Tiny YOLO v2 with depthwise separable convolutions, one
/// class, five anchors. Used here to confirm BlazeFace's candidates, on a crop around each.
#[derive(Debug, Clone)]
pub struct TinyFaceDetector {
    conv0: Conv3x3,
    convs: [SeparableConv; 5],
    conv8: Conv1x1,
}

const TINY_MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
const TINY_ANCHORS: [(f32, f32); 5] =
    [(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857), (9.041765, 10.66308)];

impl TinyFaceDetector {
    pub fn load(paths: &ModelPaths) -> Result<Self> {
        let mut map = WeightMap::load(&paths.tiny_detector_manifest, &paths.tiny_detector_weights)?;
        let sizes = [16, 32, 64, 128, 256, 512];
        Ok(Self {
            conv0: Conv3x3::load(&mut map, "conv0", 3, 16)?,
            convs: [
                SeparableConv::load(&mut map, "conv1", sizes[0], sizes[1])?,
                SeparableConv::load(&mut map, "conv2", sizes[1], sizes[2])?,
                SeparableConv::load(&mut map, "conv3", sizes[2], sizes[3])?,
                SeparableConv::load(&mut map, "conv4", sizes[3], sizes[4])?,
                SeparableConv::load(&mut map, "conv5", sizes[4], sizes[5])?,
            ],
            conv8: Conv1x1::load(&mut map, "conv8", 512, 25)?,
        })
    }

    /// Faces in `image` (padded to a square at its right or bottom, as face-api does) at an
    /// input size that is a multiple of 32, with a score above `min_score`; no suppression.
    pub fn detect(&self, image: &RgbImage, input_size: usize, min_score: f32) -> Vec<TinyDetection> {
        let x = net_input(image, input_size, TINY_MEAN_RGB, false);
        let mut out = max_pool2x2(&leaky(conv3x3_valid(&x, &self.conv0)), 2);
        for (i, conv) in self.convs.iter().enumerate() {
            out = leaky(separable(&out, conv, 1));
            out = max_pool2x2(&out, if i < 4 { 2 } else { 1 });
        }
        let out = conv1x1(&out, &self.conv8);
        let cells = out.h;
        let side = image.width().max(image.height()) as f32;
        let (fx, fy) = (side / image.width() as f32, side / image.height() as f32);
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        let mut found = Vec::new();
        for row in 0..cells {
            for col in 0..cells {
                let cell = out.at(row, col);
                for (anchor, (aw, ah)) in TINY_ANCHORS.iter().enumerate() {
                    let b = &cell[anchor * 5..anchor * 5 + 5];
                    let score = sigmoid(b[4]);
                    if score <= min_score {
                        continue;
                    }
                    let cx = (col as f32 + sigmoid(b[0])) / cells as f32 * fx;
                    let cy = (row as f32 + sigmoid(b[1])) / cells as f32 * fy;
                    let w = b[2].exp() * aw / cells as f32 * fx;
                    let h = b[3].exp() * ah / cells as f32 * fy;
                    found.push(TinyDetection {
                        score,
                        x0: cx - w / 2.0,
                        y0: cy - h / 2.0,
                        x1: cx + w / 2.0,
                        y1: cy + h / 2.0,
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_crop_is_padded_top_and_bottom() {
        // 4x2 white crop: padded to 4x4 with one zero row before and one after.
        let crop = RgbImage::from_pixel(4, 2, image::Rgb([255, 255, 255]));
        let t = input_tensor(&crop);
        let top = t.at(0, 50)[0] * 255.0 + MEAN_RGB[0];
        let middle = t.at(56, 50)[0] * 255.0 + MEAN_RGB[0];
        assert!(top.abs() < 1e-3, "{top}");
        assert!((middle - 255.0).abs() < 1e-3, "{middle}");
    }
}
