//! Timings of the pipeline (not a test): model load, detection per image, and the expression
//! and age/gender networks per face.
//!
//! ```sh
//! cargo run --release -p local-rekognition --example bench -- [--models DIR] [IMAGE...]
//! ```
//!
//! Without images it uses the bundled test photos and a synthetic 1920x1280 image holding 32
//! copies of the astronaut at about 30 px per face (which exercises the tiling).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use local_rekognition::api::AttributeSet;
use local_rekognition::input::{self, DecodedImage};
use local_rekognition::{ensure_models, Analyzer};

const RUNS: usize = 5;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let models = match args.iter().position(|a| a == "--models") {
        Some(i) => {
            let dir = PathBuf::from(args.get(i + 1).context("--models needs a directory")?);
            args.drain(i..i + 2);
            dir
        }
        None => root.join("target/local/models"),
    };
    let paths = ensure_models(&models)?;

    let loads: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            Analyzer::load(&paths).map(|_| start.elapsed())
        })
        .collect::<Result<_>>()?;
    println!(
        "model load (BlazeFace, TinyFaceDetector, expression, age/gender), median of {RUNS}: {:?}",
        median(loads)
    );
    let analyzer = Analyzer::load(&paths)?;

    let mut images: Vec<(String, DecodedImage)> = Vec::new();
    let files: Vec<PathBuf> = if args.is_empty() {
        [
            "astronaut.jpg",
            "astronaut.png",
            "chelsea.jpg",
            "coffee.jpg",
        ]
        .iter()
        .map(|name| root.join("tests/fixtures/photos").join(name))
        .collect()
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let start = Instant::now();
        let image =
            input::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        println!("decode {}: {:?}", file.display(), start.elapsed());
        images.push((
            file.file_name().unwrap().to_string_lossy().into_owned(),
            image,
        ));
    }
    if args.is_empty() {
        let astronaut = &images[1].1.image;
        let small =
            image::imageops::resize(astronaut, 154, 154, image::imageops::FilterType::Triangle);
        let mut canvas = image::RgbImage::from_pixel(1920, 1280, image::Rgb([128, 128, 128]));
        let mut copies = 0;
        for y in (0..1280 - 154).step_by(308) {
            for x in (0..1920 - 154).step_by(231) {
                image::imageops::replace(&mut canvas, &small, x as i64, y as i64);
                copies += 1;
            }
        }
        let mut synthetic = images[1].1.clone();
        synthetic.image = canvas;
        images.push((
            format!("synthetic 1920x1280, {copies} faces of ~30 px"),
            synthetic,
        ));
    }

    println!("\n| image | size | faces | detection (median of {RUNS}) | expression per face | age/gender per face |");
    println!("|---|---|---|---|---|---|");
    for (name, image) in &images {
        let mut detect = Vec::new();
        let mut expression = Vec::new();
        let mut age = Vec::new();
        let mut faces = 0;
        for _ in 0..RUNS {
            let (answer, timings) = analyzer.detect_faces_timed(image, AttributeSet::ALL)?;
            faces = answer.face_details.len();
            detect.push(timings.detect);
            expression.extend(timings.per_face.iter().map(|t| t.0));
            age.extend(timings.per_face.iter().map(|t| t.1));
        }
        let per_face = |v: Vec<Duration>| {
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:?}", median(v))
            }
        };
        println!(
            "| {name} | {}x{} | {faces} | {:?} | {} | {} |",
            image.image.width(),
            image.image.height(),
            median(detect),
            per_face(expression),
            per_face(age)
        );
    }
    Ok(())
}
