//! `http` functions: components exporting `wasi:http/incoming-handler`.
//!
//! Each request gets a fresh instance from the function's `ProxyPre`. The guest runs inline
//! until it answers; one that keeps writing its body after its headers moves to a task of its
//! own, so the response streams. The request body streams into the guest the same way, so
//! neither sits whole in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wedge_capabilities::wasi::{CapturePipe, GuestIo, GuestOutput};
use wedge_engine::outcome::GuestFailure;

use crate::call::RequestContext;
use crate::capabilities::ComponentState;
use crate::deadline;
use crate::function::Function;
use crate::guest_response;
use crate::instances::{Instances, RequestData};
use crate::logs::Stream;
use crate::outcome::{CAPTURE_LIMIT, RunOutcome, failure_response, finish};
use crate::response::{self, Body, BodyError, REQUEST_ID_HEADER};
use wasmtime_wasi_http::handler::{
    ExpirationError, InstantiationError, ProxyHandler, TrapOrPanicError,
};

/// Runs one request through a fresh instance of an `http` function.
pub(crate) async fn handle(
    pre: &ProxyPre<ComponentState>,
    function: Arc<Function>,
    request: Request<Body>,
    context: RequestContext,
) -> Response<Body> {
    let request_id = context.request_id.clone();
    let method = request.method().clone();
    let stdout = CapturePipe::new(CAPTURE_LIMIT);
    let stderr = CapturePipe::new(CAPTURE_LIMIT);
    let io = GuestIo {
        stdout: GuestOutput::Capture(stdout.clone()),
        stderr: GuestOutput::Capture(stderr.clone()),
        ..GuestIo::default()
    };
    let call_id: Arc<str> = Arc::from(request_id.as_str());
    let mut store = match function.component_store(pre.engine(), &call_id, context.deadline, &io) {
        Ok(store) => store,
        Err(error) => {
            return response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &request_id,
                &error.to_string(),
            );
        }
    };

    // The body streams into the guest, cut off past the size limit. A body without a
    // `Content-Length` can only be found too large while the guest reads it: the guest
    // sees a read error, and if it has not sent its headers yet, wedge answers 413
    // instead of whatever the guest makes of that error.
    let max_body = context.max_body_size;
    let (request, body_too_large) = limited_request(request, max_body);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let prepared = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(sender)?)));
    let (guest_request, outparam) = match prepared {
        Ok(pair) => pair,
        Err(error) => {
            return response::error(StatusCode::BAD_REQUEST, &request_id, &format!("{error:#}"));
        }
    };

    let pre = pre.clone();
    let task_function = function.clone();
    let task_request_id = request_id.clone();
    let permits = context.permits;
    let guest_deadline = tokio::time::Instant::from_std(context.deadline + deadline::TICK * 4);
    let guest = async move {
        let _permits = permits;
        let run = tokio::time::timeout_at(guest_deadline, async {
            let started = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            task_function
                .metrics
                .instantiation
                .observe(started.elapsed());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, guest_request, outparam)
                .await
        })
        .await;
        let refused = store.data().limiter.refused();
        drop(store);
        let outcome = RunOutcome::of(run, refused);
        let output = [(Stream::Stdout, &stdout), (Stream::Stderr, &stderr)];
        finish(&task_function, &task_request_id, &output, &outcome);
        outcome
    };

    // Run the guest right here until it either finishes or sets its response. Most
    // handlers finish in one go, so no task is spawned for them; one that sets its
    // headers and keeps going (a streaming body) moves to its own task to continue.
    let mut guest = Box::pin(guest);
    let mut receiver = receiver;
    let headers_deadline = tokio::time::Instant::from_std(context.deadline);
    let headers = tokio::select! {
        biased;
        outcome = &mut guest => match receiver.try_recv() {
            Ok(answer) => Ok(Ok(answer)),
            Err(_) if body_too_large.load(Ordering::Relaxed) => {
                return response::body_too_large(&request_id, max_body);
            }
            Err(_) => return failure_response(&function, &request_id, &outcome),
        },
        headers = tokio::time::timeout_at(headers_deadline, &mut receiver) => {
            tokio::spawn(guest);
            headers
        }
    };
    if body_too_large.load(Ordering::Relaxed) {
        return response::body_too_large(&request_id, max_body);
    }
    match headers {
        Ok(Ok(Ok(guest_response))) => {
            let (parts, body) = guest_response.into_parts();
            let body = body
                .map_err(|error| Box::new(error) as BodyError)
                .boxed_unsync();
            send_guest_response(
                &function,
                &request_id,
                &method,
                context.response_limits,
                parts,
                body,
            )
            .await
        }
        Ok(Ok(Err(code))) => response::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &request_id,
            &format!(
                "function `{}` answered with the error {code:?}",
                function.spec.name
            ),
        ),
        // The sender was dropped without an answer while the guest went on: it ends on
        // its own (its deadline bounds it); report a missing response.
        Ok(Err(_no_response)) => failure_response(&function, &request_id, &RunOutcome::Finished),
        Err(_elapsed) => failure_response(
            &function,
            &request_id,
            &RunOutcome::Failed(GuestFailure::Timeout),
        ),
    }
}

/// The request as a guest reads it: its body cut off past the size limit. A body without a
/// `Content-Length` can only be found too large while the guest reads it: the guest sees a
/// read error, and the flag lets wedge answer 413 instead of whatever the guest makes of it.
pub(crate) fn limited_request(
    request: Request<Body>,
    max_body: u64,
) -> (Request<wasmtime_wasi_http::WasiBody>, Arc<AtomicBool>) {
    let body_too_large = Arc::new(AtomicBool::new(false));
    let found_too_large = body_too_large.clone();
    let request = request.map(move |body| {
        Limited::new(body, max_body as usize)
            .map_err(move |error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    found_too_large.store(true, Ordering::Relaxed);
                    return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body));
                }
                // The client's connection failed mid-body (the trigger's body reports why).
                tracing::debug!(%error, "a request body could not be read");
                wasmtime_wasi_http::Error::HttpProtocolError
            })
            .boxed_unsync()
    });
    (request, body_too_large)
}

/// A guest's answer, checked and framed by wedge (guest_response.rs): its head bounded, its
/// hop-by-hop headers dropped, its length wedge's; a small finished body sent whole.
pub(crate) async fn send_guest_response(
    function: &Function,
    request_id: &str,
    method: &http::Method,
    response_limits: guest_response::ResponseHeadLimits,
    mut parts: http::response::Parts,
    body: Body,
) -> Response<Body> {
    let checked = guest_response::check_status(parts.status)
        .and_then(|()| guest_response::check_limits(&parts.headers, response_limits));
    if let Err(problem) = checked {
        return refused_response(function, request_id, &problem);
    }
    let (lengths, dropped) = guest_response::take_framing(&mut parts.headers);
    if let Some(note) = guest_response::dropped_note(&dropped) {
        function
            .log
            .push(&function.spec.name, request_id, Stream::Wedge, &note);
    }
    let (body, length) = match coalesce_small_body(body).await {
        Coalesced::Whole(bytes) => {
            match guest_response::declared_length(&lengths, Some(bytes.len() as u64), method) {
                // hyper frames a whole body itself, except for HEAD, where it sends no body
                // and keeps the length a GET would have.
                Ok(length) => (
                    response::full(bytes),
                    length.filter(|_| method == http::Method::HEAD),
                ),
                Err(problem) => return refused_response(function, request_id, &problem),
            }
        }
        Coalesced::Failed(error) => {
            let message = format!(
                "function `{}` failed writing its response body: {error}",
                function.spec.name
            );
            function
                .log
                .push(&function.spec.name, request_id, Stream::Wedge, &message);
            return response::error(StatusCode::BAD_GATEWAY, request_id, &message);
        }
        Coalesced::Streaming(body) => match guest_response::declared_length(&lengths, None, method)
        {
            Ok(Some(length)) => (ExactLength::body(body, length), Some(length)),
            Ok(None) => (body, None),
            Err(problem) => return refused_response(function, request_id, &problem),
        },
    };
    if let Some(length) = length {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, length.into());
    }
    let mut guest_response = Response::from_parts(parts, body);
    if let Ok(value) = http::header::HeaderValue::from_str(request_id) {
        guest_response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, value);
    }
    guest_response
}

/// Runs one request through the function's handler of fresh or reused instances (a WASI 0.3
/// handler, or a 0.2 one with `reuse`).
pub(crate) async fn handle_with_instances(
    handler: &ProxyHandler<Instances>,
    function: Arc<Function>,
    request: Request<Body>,
    context: RequestContext,
) -> Response<Body> {
    let request_id = context.request_id.clone();
    let method = request.method().clone();
    let max_body = context.max_body_size;
    let (request, body_too_large) = limited_request(request, max_body);
    let _permits = context.permits;
    let data = RequestData {
        request_id: Arc::from(request_id.as_str()),
        deadline: context.deadline,
    };
    let guest_deadline = tokio::time::Instant::from_std(context.deadline + deadline::TICK * 4);
    let answer = tokio::time::timeout_at(guest_deadline, handler.handle(data, request)).await;
    if body_too_large.load(Ordering::Relaxed) {
        return response::body_too_large(&request_id, max_body);
    }
    let failed = |failure: GuestFailure| {
        let outcome = RunOutcome::Failed(failure);
        finish(&function, &request_id, &[], &outcome);
        failure_response(&function, &request_id, &outcome)
    };
    match answer {
        Ok(Ok(guest_response)) => {
            let (parts, body) = guest_response.into_parts();
            let body = body
                .map_err(|error| Box::new(error) as BodyError)
                .boxed_unsync();
            send_guest_response(
                &function,
                &request_id,
                &method,
                context.response_limits,
                parts,
                body,
            )
            .await
        }
        Ok(Err(error)) if error.is::<ExpirationError>() => failed(GuestFailure::Timeout),
        Ok(Err(error)) if error.is::<TrapOrPanicError>() => failed(GuestFailure::Trap {
            reason: "the instance serving it failed (a trap or a timeout of a request sharing it)"
                .into(),
            backtrace: Vec::new(),
            memory_limit: None,
        }),
        Ok(Err(error)) if error.is::<InstantiationError<RequestData>>() => {
            failed(GuestFailure::Trap {
                reason: format!(
                    "it could not be instantiated: {}",
                    wedge_engine::program::describe_chain(error.as_ref())
                ),
                backtrace: Vec::new(),
                memory_limit: None,
            })
        }
        Ok(Err(error)) => {
            match error.downcast_ref::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>() {
                Some(code) => response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &request_id,
                    &format!(
                        "function `{}` answered with the error {code:?}",
                        function.spec.name
                    ),
                ),
                None => failed(GuestFailure::classify(&error, None)),
            }
        }
        Err(_elapsed) => failed(GuestFailure::Timeout),
    }
}

/// The most of a response body that is gathered before the headers go out.
const COALESCE_LIMIT: usize = 64 * 1024;

/// A guest's body is a stream, which hyper would send chunked, in several writes. Most
/// function responses are small and complete by the time the guest has set its headers (the
/// guest runs on this thread, so one yield lets it finish): such a body is sent whole, with a
/// `content-length`, in one write. A body that is large or still being produced streams as
/// before, starting with what was already gathered.
/// A guest's body after gathering what was ready: all of it, a stream that goes on, or the
/// error it failed with before anything was sent.
enum Coalesced {
    Whole(bytes::Bytes),
    Streaming(Body),
    Failed(BodyError),
}

async fn coalesce_small_body(mut body: Body) -> Coalesced {
    use http_body::Body as _;
    let mut gathered = bytes::BytesMut::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::task::yield_now().await;
        }
        // A no-op waker: this only takes what is ready now; `Pending` ends the gathering.
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            match std::pin::Pin::new(&mut body).poll_frame(&mut context) {
                std::task::Poll::Ready(None) => return Coalesced::Whole(gathered.freeze()),
                std::task::Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        gathered.extend_from_slice(&data);
                        if gathered.len() > COALESCE_LIMIT {
                            return Coalesced::Streaming(Prefixed::body(
                                gathered.freeze(),
                                None,
                                body,
                            ));
                        }
                    }
                    // Trailers: keep them, stream the rest as is.
                    Err(frame) => {
                        let trailers = frame.into_trailers().ok();
                        return Coalesced::Streaming(Prefixed::body(
                            gathered.freeze(),
                            trailers,
                            body,
                        ));
                    }
                },
                // Nothing has been sent yet, so the whole response can still be an error.
                std::task::Poll::Ready(Some(Err(error))) => return Coalesced::Failed(error),
                std::task::Poll::Pending => break,
            }
        }
    }
    Coalesced::Streaming(Prefixed::body(gathered.freeze(), None, body))
}

/// A body that yields already-gathered bytes (and trailers) first, then the rest.
struct Prefixed {
    prefix: Option<bytes::Bytes>,
    trailers: Option<http::HeaderMap>,
    rest: Body,
}

impl Prefixed {
    /// The gathered bytes, then trailers if the guest's body produced them, then whatever
    /// remains of it.
    fn body(prefix: bytes::Bytes, trailers: Option<http::HeaderMap>, rest: Body) -> Body {
        Self {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            trailers,
            rest,
        }
        .boxed_unsync()
    }
}

impl http_body::Body for Prefixed {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
        use std::task::Poll;
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(context)
    }
}

/// A streamed body that must be exactly the length its headers declare: more, or an end
/// before it, is an error, which makes hyper abort the connection instead of letting the
/// bytes that follow be read as the next response.
struct ExactLength {
    inner: Body,
    remaining: u64,
}

impl ExactLength {
    fn body(inner: Body, length: u64) -> Body {
        Self {
            inner,
            remaining: length,
        }
        .boxed_unsync()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the function's body {0} its declared content-length")]
struct LengthError(&'static str);

impl http_body::Body for ExactLength {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let length = data.len() as u64;
                    if length > self.remaining {
                        self.remaining = 0;
                        return Poll::Ready(Some(Err(Box::new(LengthError("is longer than")))));
                    }
                    self.remaining -= length;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if self.remaining > 0 => {
                Poll::Ready(Some(Err(Box::new(LengthError("ended before")))))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// A guest response wedge will not send: 502, with the reason in the function's log.
fn refused_response(
    function: &Function,
    request_id: &str,
    problem: &guest_response::HeadProblem,
) -> Response<Body> {
    let message = format!(
        "function `{}` answered with a response wedge will not send: {problem}",
        function.spec.name
    );
    function
        .log
        .push(&function.spec.name, request_id, Stream::Wedge, &message);
    response::error(StatusCode::BAD_GATEWAY, request_id, &message)
}
