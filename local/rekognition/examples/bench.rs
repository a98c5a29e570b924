//! Timings of the pipeline (not a test): model load, detection per image, and the expression
//! and age/gender networks per face.
//!
//! ```sh
//! cargo run --release -p local-rekognition --example bench -- [--models DIR] [IMAGE...]
//! ```
//!
//! Without images it uses the bundled test photos and a synthetic 1920x1280 image holding 32
//! copies of the astronaut at about 30 px per face (which exercises the tiling).
//!
//! With `--json` (as `cargo xtask bench` runs it) it prints one JSON object instead: the
//! model load time and the whole per-image time (decode and analysis) for the astronaut photo
//! (one face) and for three copies of it side by side (three faces), medians of 5 runs.

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
    let json = match args.iter().position(|a| a == "--json") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };

    let loads: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            Analyzer::load(&paths).map(|_| start.elapsed())
        })
        .collect::<Result<_>>()?;
    let load = median(loads);
    let analyzer = Analyzer::load(&paths)?;
    if json {
        return print_json(&root, &analyzer, load);
    }
    println!("model load (BlazeFace, TinyFaceDetector, expression, age/gender), median of {RUNS}: {load:?}");

    let mut images: Vec<(String, DecodedImage)> = Vec::new();
    let files: Vec<PathBuf> = if args.is_empty() {
        ["astronaut.jpg", "astronaut.png", "chelsea.jpg", "coffee.jpg"]
            .iter()
            .map(|name| root.join("tests/fixtures/photos").join(name))
            .collect()
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let start = Instant::now();
        let image = input::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        println!("decode {}: {:?}", file.display(), start.elapsed());
        images.push((file.file_name().unwrap().to_string_lossy().into_owned(), image));
    }
    if args.is_empty() {
        let astronaut = &images[1].1.image;
        let small = image::imageops::resize(astronaut, 154, 154, image::imageops::FilterType::Triangle);
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
        images.push((format!("synthetic 1920x1280, {copies} faces of ~30 px"), synthetic));
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

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `--json` report: model load, and per-image times for one and three faces.
fn print_json(root: &std::path::Path, analyzer: &Analyzer, load: Duration) -> Result<()> {
    let path = root.join("tests/fixtures/photos/astronaut.jpg");
    let one = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let decoded = input::decode(&one).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (width, height) = (decoded.image.width(), decoded.image.height());
    let mut canvas = image::RgbImage::from_pixel(width * 3, height, image::Rgb([128, 128, 128]));
    for copy in 0..3 {
        image::imageops::replace(&mut canvas, &decoded.image, i64::from(copy * width), 0);
    }
    let mut three = Vec::new();
    image::DynamicImage::ImageRgb8(canvas)
        .write_to(&mut std::io::Cursor::new(&mut three), image::ImageFormat::Png)
        .context("encoding the three-face image")?;

    let mut images = Vec::new();
    for (name, bytes, expected) in [
        ("astronaut.jpg, 512x512".to_owned(), one, 1),
        (format!("three astronauts side by side, {}x{height} PNG", width * 3), three, 3),
    ] {
        let mut decode = Vec::new();
        let mut analyze = Vec::new();
        let mut faces = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let image = input::decode(&bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let decoded_at = start.elapsed();
            let answer = analyzer.detect_faces(&image, AttributeSet::ALL)?;
            analyze.push(start.elapsed() - decoded_at);
            decode.push(decoded_at);
            faces = answer.face_details.len();
        }
        anyhow::ensure!(faces == expected, "{name}: found {faces} faces, expected {expected}");
        let (decode, analyze) = (median(decode), median(analyze));
        images.push(serde_json::json!({
            "image": name,
            "faces": faces,
            "decode_ms": millis(decode),
            "analysis_ms": millis(analyze),
            "total_ms": millis(decode + analyze),
        }));
    }
    let report = serde_json::json!({
        "runs": RUNS,
        "model_load_ms": millis(load),
        "images": images,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
