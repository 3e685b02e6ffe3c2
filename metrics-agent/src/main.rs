//! `metrics-agent`: serves corral's container metrics to Prometheus.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use corral_metrics_agent::cli::Cli;
use corral_metrics_agent::{Agent, ContainerLabels, Settings};
use hyper::header::{self, HeaderValue};
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

fn main() {
    let one_arena = limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(corral_runtime::logfilter::from_env(
            "metrics-agent",
            "RUST_LOG",
            LevelFilter::INFO,
        ))
        .init();

    let args = Cli::parse();
    if !one_arena {
        tracing::warn!("mallopt(M_ARENA_MAX, 1) failed, malloc keeps an arena per thread");
    }
    // Kept descriptors make a scrape cheaper, so the agent takes every
    // descriptor its hard limit allows. Settings::new sizes the budget of
    // kept descriptors from the raised limit.
    match corral_metrics_agent::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "raised the soft limit of open files"),
        Err(errno) => tracing::warn!(
            %errno,
            "failed to raise the soft limit of open files, keeping fewer descriptors between scrapes"
        ),
    }
    let result = tokio::runtime::Runtime::new()
        .context("failed to start the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    if let Err(error) = result {
        eprintln!("metrics-agent: {}", error_chain(&error));
        std::process::exit(1);
    }
}

/// Makes glibc's malloc use one arena for every thread. A scrape allocates
/// its samples on short-lived scrape threads and frees them on another
/// thread. With an arena per thread, the freed memory stayed spread over
/// several arenas. At 1000 containers the agent's RSS was about 30 MiB with
/// the default arenas and 21 MiB with one, at the same CPU time per scrape
/// (`bench/agent`, 2 CPUs). Returns false when malloc rejected the setting.
fn limit_malloc_arenas() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only changes malloc's tuning and takes no pointers.
        // It runs before the process starts a second thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    true
}

/// Joins an error and its causes with ": ", leaving out a cause whose text
/// the previous message already contains (hyper repeats its source in its
/// own message).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !previous.is_empty() && previous.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        previous = message;
    }
    text
}

async fn run(args: Cli) -> anyhow::Result<()> {
    let listen = args.listen;
    let mut settings = Settings::new(args.run_dir);
    settings.cgroup_root = args.cgroup_root;
    settings.per_cpu = args.per_cpu;
    settings.container_labels = if args.no_container_labels {
        ContainerLabels::None
    } else if args.container_label.is_empty() {
        ContainerLabels::All
    } else {
        ContainerLabels::Only(args.container_label.into_iter().collect())
    };
    settings.supervisor_socket = args.supervisor_socket;
    if let Some(count) = args.kept_descriptors {
        settings.kept_descriptors = count;
    }
    if let Some(threads) = args.scrape_threads {
        settings.scrape_threads = usize::from(threads);
    }

    let agent = Arc::new(Agent::new(settings)?);
    agent.watch()?;

    let builder =
        Server::try_bind(&listen).with_context(|| format!("failed to listen on {listen}"))?;
    let service_agent = Arc::clone(&agent);
    let server = builder.http1_only(true).serve(make_service_fn(move |_| {
        let agent = Arc::clone(&service_agent);
        async move {
            Ok::<_, Infallible>(service_fn(move |request| {
                let agent = Arc::clone(&agent);
                async move { Ok::<_, Infallible>(respond(&agent, request).await) }
            }))
        }
    }));
    let address = server.local_addr();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %address,
        run_dir = %agent.settings().run_dir.display(),
        "metrics agent started"
    );
    server
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("metrics agent stopped");
    Ok(())
}

/// Serves `GET /metrics` and `GET /healthz`; other paths are 404 and other
/// methods 405.
async fn respond(agent: &Arc<Agent>, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path();
    let path = path
        .strip_suffix('/')
        .filter(|path| !path.is_empty())
        .unwrap_or(path);
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return text_reply(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        );
    }
    if request.method() != Method::GET {
        return text_reply(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed here\n");
    }
    if path == "/healthz" {
        return text_reply(StatusCode::OK, "ok\n");
    }
    match agent.scrape().await {
        Ok(text) => {
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            response
        }
        Err(error) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::new(error)), "scrape failed");
            text_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "scrape failed, see the agent's log\n",
            )
        }
    }
}

fn text_reply(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "failed to install the SIGTERM handler, stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM, stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, stopping"),
    }
}
