//! Just enough of TensorFlow.js to run face-api's small networks on the CPU: the weights
//! manifest format (with its uint8 quantization) and the NHWC float32 operations the networks
//! use, with TensorFlow's `SAME`/`VALID` padding rules.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// An NHWC tensor of one image (batch 1): `data[(y * w + x) * c + channel]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor3 {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Tensor3 {
    pub fn zeros(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c, data: vec![0.0; h * w * c] }
    }

    #[inline]
    pub fn at(&self, y: usize, x: usize) -> &[f32] {
        let start = (y * self.w + x) * self.c;
        &self.data[start..start + self.c]
    }
}

/// A named weight from the manifest, dequantized to float32.
#[derive(Debug, Clone)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    scale: f32,
    min: f32,
}

/// The weights of a TensorFlow.js model: a manifest (JSON) and its binary shard, which holds
/// the weights back to back in manifest order.
#[derive(Debug, Clone)]
pub struct WeightMap(HashMap<String, Weight>);

impl WeightMap {
    /// Reads a manifest and the one shard it names (which must be `shard`'s file name).
    pub fn load(manifest: &Path, shard: &Path) -> Result<Self> {
        let text = std::fs::read(manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let bytes = std::fs::read(shard).with_context(|| format!("reading {}", shard.display()))?;
        Self::parse(&text, &bytes).with_context(|| format!("parsing the weights {}", manifest.display()))
    }

    pub fn parse(manifest: &[u8], bytes: &[u8]) -> Result<Self> {
        let groups: Vec<ManifestGroup> = serde_json::from_slice(manifest)?;
        ensure!(groups.len() == 1 && groups[0].paths.len() == 1, "expected one weights group with one shard");
        let mut offset = 0usize;
        let mut map = HashMap::new();
        for entry in &groups[0].weights {
            ensure!(entry.dtype == "float32", "{}: dtype {} is not supported", entry.name, entry.dtype);
            let count: usize = entry.shape.iter().product();
            let data = match &entry.quantization {
                Some(q) => {
                    ensure!(q.dtype == "uint8", "{}: quantization {} is not supported", entry.name, q.dtype);
                    let raw = bytes.get(offset..offset + count).context("the weights file is too short")?;
                    offset += count;
                    raw.iter().map(|&v| v as f32 * q.scale + q.min).collect()
                }
                None => {
                    let raw = bytes.get(offset..offset + 4 * count).context("the weights file is too short")?;
                    offset += 4 * count;
                    raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                }
            };
            map.insert(entry.name.clone(), Weight { shape: entry.shape.clone(), data });
        }
        ensure!(offset == bytes.len(), "the weights file has {} bytes, the manifest describes {offset}", bytes.len());
        Ok(Self(map))
    }

    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let weight = self.0.remove(name).with_context(|| format!("the weights have no {name}"))?;
        if weight.shape != shape {
            bail!("{name} has shape {:?}, expected {shape:?}", weight.shape);
        }
        Ok(weight.data)
    }
}

/// A 3x3 convolution (`filters` in TF's HWIO layout) with bias.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    pub cin: usize,
    pub cout: usize,
    pub filters: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A 1x1 convolution with bias (`filters` as `[cin][cout]`).
#[derive(Debug, Clone)]
pub struct Conv1x1 {
    pub cin: usize,
    pub cout: usize,
    pub filters: Vec<f32>,
    pub bias: Vec<f32>,
}

/// TF's `separableConv2d` (3x3 depthwise, channel multiplier 1, then 1x1 pointwise) plus bias.
#[derive(Debug, Clone)]
pub struct SeparableConv {
    pub depthwise: Vec<f32>,
    pub pointwise: Conv1x1,
}

/// A fully connected layer: `weights` as `[cin][cout]`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub cin: usize,
    pub cout: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Conv3x3 {
    pub fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            cin,
            cout,
            filters: map.take(&format!("{prefix}/filters"), &[3, 3, cin, cout])?,
            bias: map.take(&format!("{prefix}/bias"), &[cout])?,
        })
    }
}

impl Conv1x1 {
    pub fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            cin,
            cout,
            filters: map.take(&format!("{prefix}/filters"), &[1, 1, cin, cout])?,
            bias: map.take(&format!("{prefix}/bias"), &[cout])?,
        })
    }
}

impl SeparableConv {
    pub fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            depthwise: map.take(&format!("{prefix}/depthwise_filter"), &[3, 3, cin, 1])?,
            pointwise: Conv1x1 {
                cin,
                cout,
                filters: map.take(&format!("{prefix}/pointwise_filter"), &[1, 1, cin, cout])?,
                bias: map.take(&format!("{prefix}/bias"), &[cout])?,
            },
        })
    }
}

impl Dense {
    pub fn load(map: &mut WeightMap, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            cin,
            cout,
            weights: map.take(&format!("{prefix}/weights"), &[cin, cout])?,
            bias: map.take(&format!("{prefix}/bias"), &[cout])?,
        })
    }

    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.cin);
        let mut out = self.bias.clone();
        for (i, &v) in x.iter().enumerate() {
            let row = &self.weights[i * self.cout..(i + 1) * self.cout];
            for (o, w) in out.iter_mut().zip(row) {
                *o += v * w;
            }
        }
        out
    }
}

/// TF `SAME` padding along one axis: (output size, padding before).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2)
}

/// 3x3 convolution, `SAME` padding, with bias.
pub fn conv3x3(x: &Tensor3, conv: &Conv3x3, stride: usize) -> Tensor3 {
    let (oh, pt) = same_padding(x.h, 3, stride);
    let (ow, pl) = same_padding(x.w, 3, stride);
    conv3x3_padded(x, conv, stride, (oh, pt), (ow, pl))
}

/// 3x3 convolution, stride 1, `VALID` padding, with bias.
pub fn conv3x3_valid(x: &Tensor3, conv: &Conv3x3) -> Tensor3 {
    conv3x3_padded(x, conv, 1, (x.h - 2, 0), (x.w - 2, 0))
}

fn conv3x3_padded(
    x: &Tensor3,
    conv: &Conv3x3,
    stride: usize,
    (oh, pt): (usize, usize),
    (ow, pl): (usize, usize),
) -> Tensor3 {
    assert_eq!(x.c, conv.cin);
    let mut out = Tensor3::zeros(oh, ow, conv.cout);
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out.data[(oy * ow + ox) * conv.cout..(oy * ow + ox + 1) * conv.cout];
            o.copy_from_slice(&conv.bias);
            for ky in 0..3 {
                let iy = (oy * stride + ky) as isize - pt as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..3 {
                    let ix = (ox * stride + kx) as isize - pl as isize;
                    if ix < 0 || ix >= x.w as isize {
                        continue;
                    }
                    let input = x.at(iy as usize, ix as usize);
                    for (ci, &v) in input.iter().enumerate() {
                        let w = &conv.filters[((ky * 3 + kx) * conv.cin + ci) * conv.cout..][..conv.cout];
                        for (o, w) in o.iter_mut().zip(w) {
                            *o += v * w;
                        }
                    }
                }
            }
        }
    }
    out
}

/// 3x3 depthwise convolution (channel multiplier 1), `SAME` padding, no bias.
pub fn depthwise3x3(x: &Tensor3, filters: &[f32], stride: usize) -> Tensor3 {
    let c = x.c;
    let (oh, pt) = same_padding(x.h, 3, stride);
    let (ow, pl) = same_padding(x.w, 3, stride);
    let mut out = Tensor3::zeros(oh, ow, c);
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out.data[(oy * ow + ox) * c..(oy * ow + ox + 1) * c];
            for ky in 0..3 {
                let iy = (oy * stride + ky) as isize - pt as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..3 {
                    let ix = (ox * stride + kx) as isize - pl as isize;
                    if ix < 0 || ix >= x.w as isize {
                        continue;
                    }
                    let input = x.at(iy as usize, ix as usize);
                    let w = &filters[(ky * 3 + kx) * c..][..c];
                    for ((o, v), w) in o.iter_mut().zip(input).zip(w) {
                        *o += v * w;
                    }
                }
            }
        }
    }
    out
}

/// 1x1 convolution with bias (stride 1). Four pixels at a time, so that each row of weights
/// is read once per four pixels.
pub fn conv1x1(x: &Tensor3, conv: &Conv1x1) -> Tensor3 {
    assert_eq!(x.c, conv.cin);
    let (cin, cout) = (conv.cin, conv.cout);
    let mut out = Tensor3::zeros(x.h, x.w, cout);
    let mut inputs = x.data.chunks_exact(4 * cin);
    let mut outputs = out.data.chunks_exact_mut(4 * cout);
    for (input, o) in (&mut inputs).zip(&mut outputs) {
        let (o0, rest) = o.split_at_mut(cout);
        let (o1, rest) = rest.split_at_mut(cout);
        let (o2, o3) = rest.split_at_mut(cout);
        for o in [&mut *o0, &mut *o1, &mut *o2, &mut *o3] {
            o.copy_from_slice(&conv.bias);
        }
        for ci in 0..cin {
            let (v0, v1, v2, v3) = (input[ci], input[cin + ci], input[2 * cin + ci], input[3 * cin + ci]);
            let w = &conv.filters[ci * cout..(ci + 1) * cout];
            for k in 0..cout {
                let wk = w[k];
                o0[k] += v0 * wk;
                o1[k] += v1 * wk;
                o2[k] += v2 * wk;
                o3[k] += v3 * wk;
            }
        }
    }
    for (input, o) in inputs.remainder().chunks_exact(cin).zip(outputs.into_remainder().chunks_exact_mut(cout)) {
        o.copy_from_slice(&conv.bias);
        for (ci, &v) in input.iter().enumerate() {
            let w = &conv.filters[ci * cout..(ci + 1) * cout];
            for (o, w) in o.iter_mut().zip(w) {
                *o += v * w;
            }
        }
    }
    out
}

/// 1x1 convolution with stride 2 and `SAME` padding (which needs none for a 1x1 kernel).
pub fn conv1x1_stride2(x: &Tensor3, conv: &Conv1x1) -> Tensor3 {
    let (oh, _) = same_padding(x.h, 1, 2);
    let (ow, _) = same_padding(x.w, 1, 2);
    let mut sub = Tensor3::zeros(oh, ow, x.c);
    for oy in 0..oh {
        for ox in 0..ow {
            let start = (oy * ow + ox) * x.c;
            sub.data[start..start + x.c].copy_from_slice(x.at(oy * 2, ox * 2));
        }
    }
    conv1x1(&sub, conv)
}

/// TF `separableConv2d(x, depthwise, pointwise, stride, 'same')` plus bias.
pub fn separable(x: &Tensor3, conv: &SeparableConv, stride: usize) -> Tensor3 {
    conv1x1(&depthwise3x3(x, &conv.depthwise, stride), &conv.pointwise)
}

pub fn relu(mut x: Tensor3) -> Tensor3 {
    x.data.iter_mut().for_each(|v| *v = v.max(0.0));
    x
}

/// Element-wise sum of tensors of one shape.
pub fn add(tensors: &[&Tensor3]) -> Tensor3 {
    let mut out = tensors[0].clone();
    for t in &tensors[1..] {
        assert_eq!((t.h, t.w, t.c), (out.h, out.w, out.c));
        out.data.iter_mut().zip(&t.data).for_each(|(o, v)| *o += v);
    }
    out
}

/// 3x3 max pooling, stride 2, `SAME` padding (padding never wins).
pub fn max_pool3x3_s2(x: &Tensor3) -> Tensor3 {
    let (oh, pt) = same_padding(x.h, 3, 2);
    let (ow, pl) = same_padding(x.w, 3, 2);
    let mut out = Tensor3 { h: oh, w: ow, c: x.c, data: vec![f32::NEG_INFINITY; oh * ow * x.c] };
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out.data[(oy * ow + ox) * x.c..(oy * ow + ox + 1) * x.c];
            for ky in 0..3 {
                let iy = (oy * 2 + ky) as isize - pt as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..3 {
                    let ix = (ox * 2 + kx) as isize - pl as isize;
                    if ix < 0 || ix >= x.w as isize {
                        continue;
                    }
                    for (o, &v) in o.iter_mut().zip(x.at(iy as usize, ix as usize)) {
                        *o = o.max(v);
                    }
                }
            }
        }
    }
    out
}

/// 2x2 max pooling with `SAME` padding (stride 1 or 2).
pub fn max_pool2x2(x: &Tensor3, stride: usize) -> Tensor3 {
    let (oh, pt) = same_padding(x.h, 2, stride);
    let (ow, pl) = same_padding(x.w, 2, stride);
    let mut out = Tensor3 { h: oh, w: ow, c: x.c, data: vec![f32::NEG_INFINITY; oh * ow * x.c] };
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out.data[(oy * ow + ox) * x.c..(oy * ow + ox + 1) * x.c];
            for ky in 0..2 {
                let iy = oy * stride + ky;
                if iy < pt || iy - pt >= x.h {
                    continue;
                }
                for kx in 0..2 {
                    let ix = ox * stride + kx;
                    if ix < pl || ix - pl >= x.w {
                        continue;
                    }
                    for (o, &v) in o.iter_mut().zip(x.at(iy - pt, ix - pl)) {
                        *o = o.max(v);
                    }
                }
            }
        }
    }
    out
}

/// TensorFlow.js's leaky ReLU as face-api writes it: `relu(x - 0.1x) + 0.1x`.
pub fn leaky(mut x: Tensor3) -> Tensor3 {
    x.data.iter_mut().for_each(|v| {
        let min = *v * 0.1;
        *v = (*v - min).max(0.0) + min;
    });
    x
}

/// Average pooling over a whole 7x7 map (`avgPool(x, [7, 7], [2, 2], 'valid')` on a 7x7
/// input, which has one output).
pub fn global_avg_pool7(x: &Tensor3) -> Vec<f32> {
    assert_eq!((x.h, x.w), (7, 7), "the networks end on a 7x7 map");
    let mut out = vec![0.0f32; x.c];
    for pixel in x.data.chunks_exact(x.c) {
        out.iter_mut().zip(pixel).for_each(|(o, v)| *o += v);
    }
    out.iter_mut().for_each(|o| *o /= 49.0);
    out
}

pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_padding(112, 3, 2), (56, 0)); // total 1: all of it after
        assert_eq!(same_padding(56, 3, 1), (56, 1));
        assert_eq!(same_padding(7, 3, 2), (4, 1));
        assert_eq!(same_padding(14, 1, 2), (7, 0));
    }

    #[test]
    fn blocked_1x1_convolution_equals_the_plain_sum() {
        // 3x3 pixels (not a multiple of four), 5 in, 3 out.
        let x = Tensor3 { h: 3, w: 3, c: 5, data: (0..45).map(|v| (v as f32 * 0.37).sin()).collect() };
        let conv = Conv1x1 {
            cin: 5,
            cout: 3,
            filters: (0..15).map(|v| (v as f32 * 0.11).cos()).collect(),
            bias: vec![0.1, -0.2, 0.3],
        };
        let y = conv1x1(&x, &conv);
        for p in 0..9 {
            for o in 0..3 {
                let expected = conv.bias[o] + (0..5).map(|i| x.data[p * 5 + i] * conv.filters[i * 3 + o]).sum::<f32>();
                assert!((y.data[p * 3 + o] - expected).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn max_pool_2x2_pads_after() {
        let x = Tensor3 { h: 3, w: 3, c: 1, data: (1..=9).map(|v| v as f32).collect() };
        assert_eq!(max_pool2x2(&x, 2).data, vec![5.0, 6.0, 8.0, 9.0]);
        assert_eq!(max_pool2x2(&x, 1).data, vec![5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
    }

    #[test]
    fn depthwise_of_ones_counts_the_window() {
        let x = Tensor3 { h: 4, w: 4, c: 1, data: vec![1.0; 16] };
        let y = depthwise3x3(&x, &[1.0; 9], 2);
        // Output 2x2; padding 0 before, 1 after: the first window is whole, the last clipped.
        assert_eq!(y.data, vec![9.0, 6.0, 6.0, 4.0]);
    }

    #[test]
    fn quantized_weights_dequantize() {
        let manifest = br#"[{"paths":["m.bin"],"weights":[
            {"name":"a","shape":[2],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1.0}},
            {"name":"b","shape":[1],"dtype":"float32"}]}]"#;
        let mut bytes = vec![0u8, 4u8];
        bytes.extend_from_slice(&2.5f32.to_le_bytes());
        let mut map = WeightMap::parse(manifest, &bytes).unwrap();
        assert_eq!(map.take("a", &[2]).unwrap(), vec![-1.0, 1.0]);
        assert_eq!(map.take("b", &[1]).unwrap(), vec![2.5]);
        assert!(map.take("c", &[1]).is_err());
    }
}
