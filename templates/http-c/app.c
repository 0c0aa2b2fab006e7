/* A wedge function in C: a wasi:http/proxy component. wit-bindgen generates gen/app.h from
 * the WIT in wit/; this file implements the one export, wasi:http/incoming-handler.handle:
 * it gets the request and a place to put the response, sets the response, then writes the
 * body through its output stream. */
#include <stdio.h>
#include <string.h>

#include "app.h"

/* A header list entry from two C strings (the host copies them). */
static wasi_http_types_tuple2_field_name_field_value_t header(const char *name, const char *value) {
    wasi_http_types_tuple2_field_name_field_value_t entry;
    entry.f0.ptr = (uint8_t *)name;
    entry.f0.len = strlen(name);
    entry.f1.ptr = (uint8_t *)value;
    entry.f1.len = strlen(value);
    return entry;
}

/* Sends `status`, one content-type header and `body` as the response. */
static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *content_type, const char *body, size_t body_len) {
    wasi_http_types_tuple2_field_name_field_value_t entries[] = {header("content-type", content_type)};
    wasi_http_types_list_tuple2_field_name_field_value_t list = {entries, 1};
    wasi_http_types_own_fields_t headers;
    wasi_http_types_header_error_t header_error;
    if (!wasi_http_types_static_fields_from_list(&list, &headers, &header_error)) {
        headers = wasi_http_types_constructor_fields();
    }
    wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_borrow_outgoing_response_t borrowed = wasi_http_types_borrow_outgoing_response(response);
    wasi_http_types_method_outgoing_response_set_status_code(borrowed, status);
    wasi_http_types_own_outgoing_body_t body_handle;
    wasi_http_types_method_outgoing_response_body(borrowed, &body_handle);

    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = false;
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body_handle), &stream)) {
        wasi_io_streams_borrow_output_stream_t writer = wasi_io_streams_borrow_output_stream(stream);
        /* blocking-write-and-flush takes at most 4096 bytes at a time. */
        for (size_t done = 0; done < body_len;) {
            size_t n = body_len - done < 4096 ? body_len - done : 4096;
            app_list_u8_t chunk = {(uint8_t *)body + done, n};
            wasi_io_streams_stream_error_t error;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(writer, &chunk, &error)) {
                break;
            }
            done += n;
        }
        /* The stream must be dropped before the body is finished. */
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t finish_error;
    wasi_http_types_static_outgoing_body_finish(body_handle, NULL, &finish_error);
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
    app_string_t path;
    char text[512];
    if (wasi_http_types_method_incoming_request_path_with_query(
            wasi_http_types_borrow_incoming_request(request), &path)) {
        snprintf(text, sizeof text, "hello from c at %.*s\n", (int)path.len, (const char *)path.ptr);
        app_string_free(&path);
    } else {
        snprintf(text, sizeof text, "hello from c\n");
    }
    wasi_http_types_incoming_request_drop_own(request);
    respond(response_out, 200, "text/plain", text, strlen(text));
}
