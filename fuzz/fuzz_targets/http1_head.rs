//! The first request head of a plain HTTP/1.1 connection, which Herald
//! parses itself to serve event streams without hyper's buffers
//! (`herald::server::http1_stream::classify`).
//!
//! Whatever the bytes, the verdict is one of: wait for more, hand the
//! connection to hyper, refuse as too large, or serve a stream. A stream
//! verdict must be a `GET` over HTTP/1.1 to a streaming path with no body,
//! upgrade or `Expect`, its head length must lie within what was read and
//! end a line, and the same verdict must come from the head alone, since
//! the bytes after it belong to the client's next request.
#![no_main]

use herald::http::STREAM_PATHS;
use herald::server::http1_stream::{classify, Parsed};
use http::{header, Method, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        Parsed::Stream(req, n) => {
            assert!(n <= data.len() && n <= 64 * 1024, "head length {n}");
            assert!(data[..n].ends_with(b"\n"), "a head ends with a line");
            assert_eq!(req.method(), Method::GET);
            assert_eq!(req.version(), Version::HTTP_11);
            assert!(STREAM_PATHS.contains(&req.uri().path()), "{:?}", req.uri());
            let h = req.headers();
            assert!(h.get(header::CONTENT_LENGTH).is_none_or(|v| v == "0"));
            for name in [header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT] {
                assert!(!h.contains_key(&name), "{name} is hyper's to handle");
            }
            let Parsed::Stream(alone, m) = classify(&data[..n]) else {
                panic!("the head alone got another verdict");
            };
            assert_eq!(m, n);
            assert_eq!(alone.uri(), req.uri());
            assert_eq!(alone.headers(), req.headers());
        }
        Parsed::Partial => {
            // Fewer bytes can only be less of a head.
            let shorter = &data[..data.len() / 2];
            assert!(!matches!(classify(shorter), Parsed::Stream(..)));
        }
        Parsed::Other | Parsed::TooLarge => {}
    }
});
