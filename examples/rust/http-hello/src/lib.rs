//! http-hello: the smallest useful `wasi:http/proxy` component.
//!
//! Answers every request with 200, `content-type: text/plain`, body `hello from wedge\n`.
//! It is the function of the serve benchmark (benches/serve/), so it does nothing else.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasip2::http::proxy::export!(Hello);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let mut out = body.write().expect("stream taken once");
        out.write_all(b"hello from wedge\n").expect("write body");
        out.flush().expect("flush body");
        drop(out); // the stream must be dropped before the body is finished
        OutgoingBody::finish(body, None).expect("finish body");
    }
}
