//! The exporter's HTTP/1.1 server (hyper), on its own thread and runtime: `/metrics` in the
//! format the scraper's `Accept` asks for, `/healthz`, and an index page at `/`.

use std::{
    convert::Infallible, net::TcpListener as StdListener, sync::Arc, thread::JoinHandle,
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::Slot;
use crate::{
    error::{Error, Result},
    output::metrics::{encode, negotiate},
};

/// A running server.
pub struct Server {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

const INDEX: &str = "<!doctype html>\n<html><head><title>cxl-trace exporter</title></head><body>\n\
<h1>cxl-trace exporter</h1>\n<p>Page faults, migrations, promotions and demotions per memory tier, \
from eBPF.</p>\n<ul><li><a href=\"/metrics\">/metrics</a>: Prometheus text, OpenMetrics or \
protobuf with native histograms, by <code>Accept</code></li>\n\
<li><a href=\"/healthz\">/healthz</a>: 200 while the metrics are fresh</li></ul>\n</body></html>\n";

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to one request.
fn answer(req: &Request<Incoming>, slot: &Slot, interval_s: f64) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    let (families, age, done) = {
        let p = slot.lock().unwrap_or_else(|e| e.into_inner());
        (p.families.clone(), p.at.elapsed(), p.done)
    };
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = negotiate(accept);
            match encode(families, format) {
                Ok(body) => reply(StatusCode::OK, format.content_type(), body),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e),
            }
        }
        "/healthz" => {
            // Fresh: rebuilt within three intervals (at least 5 s).
            let stale = Duration::from_secs_f64((3.0 * interval_s).max(5.0));
            let (status, text) = if done {
                (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
            } else if families.is_empty() {
                (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            } else if age > stale {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stale: the event loop is behind\n",
                )
            } else {
                (StatusCode::OK, "ok\n")
            };
            reply(status, "text/plain; charset=utf-8", text)
        }
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", INDEX),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n",
        ),
    }
}

async fn serve(
    listener: StdListener,
    slot: Slot,
    interval_s: f64,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cxl-trace: exporter: cannot serve: {e}");
            return;
        }
    };
    let slot = Arc::new(slot);
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => return,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("exporter: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = slot.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = answer(&req, &slot, interval_s);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("exporter: connection: {e}");
            }
        });
    }
}

impl Server {
    /// Serves `listener` from a new thread until [`Server::stop`].
    pub fn start(listener: StdListener, slot: Slot, interval_s: f64) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listener", e))?;
        let (tx, rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start the server's runtime: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("cxl-trace-http".into())
            .spawn(move || rt.block_on(serve(listener, slot, interval_s, rx)))
            .map_err(|e| Error::Runtime(format!("cannot start the server thread: {e}")))?;
        Ok(Self {
            stop: tx,
            thread: Some(thread),
        })
    }

    /// Stops accepting and waits for the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
