//! Logging and tracing setup: fmt logs always, OTLP (gRPC) span export when an endpoint is given.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Bad `RUST_LOG`/`--log` filter.
    #[error("log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already set.
    #[error("tracing subscriber: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// Flushes and shuts down span export when dropped.
#[derive(Debug)]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber. Must run inside a tokio runtime when `otlp_endpoint` is set
/// (the batch exporter uses it).
pub fn init(filter: &str, otlp_endpoint: Option<&str>) -> Result<Guard, TelemetryError> {
    let filter = EnvFilter::try_new(filter)?;
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    let (otel, provider) = match otlp_endpoint.filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name("volley-operator")
                        .build(),
                )
                .build();
            let tracer = provider.tracer("volley-operator");
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(Guard(provider))
}
