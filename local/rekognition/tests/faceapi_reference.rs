//! The Rust ports of face-api's networks against face-api's own JavaScript.
//!
//! The reference numbers were produced by `@vladmandic/face-api@1.7.15` (its bundled
//! TensorFlow.js, CPU backend, in Node 20) on the same inputs: crops of
//! `tests/fixtures/photos/astronaut.png` given as `tf.tensor3d` to
//! `faceExpressionNet.predictExpressions`, `ageGenderNet.predictAgeAndGender`, and the whole
//! image to `tinyFaceDetector.locateFaces({inputSize: 416, scoreThreshold: 0.5})`.

#![allow(clippy::excessive_precision, clippy::type_complexity)] // numbers as face-api printed them

use std::path::Path;

use local_rekognition::faceapi::{self, AgeGenderNet, ExpressionNet, TinyFaceDetector};
use local_rekognition::image;

/// (x, y, width, height) of the crop, expression probabilities, age, probability of male.
const REFERENCE: [((u32, u32, u32, u32), [f32; 7], f32, f32); 3] = [
    (
        (160, 10, 120, 150),
        [5.040184e-6, 0.99994719, 2.2960494e-9, 4.0597254e-7, 4.0580705e-8, 3.1570170e-7, 4.7023987e-5],
        65.50232,
        0.88684076,
    ),
    (
        (150, 20, 160, 110),
        [0.068476379, 0.0030270147, 0.92528826, 0.00052348507, 0.00036318615, 1.8263148e-5, 0.0023034331],
        65.50993,
        0.95322341,
    ),
    (
        (0, 0, 512, 512),
        [0.10026029, 0.72603458, 0.12482191, 0.019860258, 0.00023690093, 0.00017069861, 0.028615359],
        50.784103,
        0.71814573,
    ),
];

#[test]
fn the_ports_reproduce_face_api_javascript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let paths = local_rekognition::ensure_models(&root.join("target/local/models")).unwrap();
    let expression = ExpressionNet::load(&paths).unwrap();
    let age_gender = AgeGenderNet::load(&paths).unwrap();
    let photo = image::open(root.join("tests/fixtures/photos/astronaut.png")).unwrap().into_rgb8();
    for ((x, y, w, h), expected, age, male) in REFERENCE {
        let crop = image::imageops::crop_imm(&photo, x, y, w, h).to_image();
        let input = faceapi::input_tensor(&crop);
        let probabilities = expression.predict(&input);
        for (p, e) in probabilities.iter().zip(expected) {
            assert!((p - e).abs() < 1e-5, "crop {w}x{h}: {probabilities:?} vs face-api {expected:?}");
        }
        let estimate = age_gender.predict(&input);
        assert!((estimate.age - age).abs() < 1e-3, "crop {w}x{h}: age {} vs face-api {age}", estimate.age);
        assert!(
            (estimate.male_probability - male).abs() < 1e-5,
            "crop {w}x{h}: {} vs {male}",
            estimate.male_probability
        );
    }

    let tiny = TinyFaceDetector::load(&paths).unwrap();
    let found = tiny.detect(&photo, 416, 0.5);
    assert_eq!(found.len(), 1, "{found:?}");
    let d = found[0];
    let expected = [0.97547107, 0.31885247, 0.14777411, 0.54548822, 0.36453854];
    for (a, e) in [d.score, d.x0, d.y0, d.x1, d.y1].iter().zip(expected) {
        assert!((a - e).abs() < 1e-4, "{d:?} vs face-api {expected:?}");
    }
}
