//! Arbitrary bytes through the L7 HTTP building blocks: as a request head
//! (tight limits), and if one parses, through `rewrite_request_head` and the
//! router; as a response head; and as a chunked body fed in two pieces.
//!
//! Contracts checked beyond "does not panic": a rewritten head is a request
//! Sluice itself accepts, with the same method, framing and upgrade, and a
//! chunked body decodes to the same verdict and data wherever it is split.
#![no_main]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::l7::http::{
    parse_request_head, parse_response_head, rewrite_request_head, ChunkedDecoder, HeadEdits,
    HeaderEdits, Limits, Method, PrefixRewrite, Proto,
};
use sluice::l7::router::{Matcher, Route, RouteAction, Router, ValueMatch};

const LIMITS: Limits = Limits {
    max_head_bytes: 2048,
    max_headers: 16,
    max_uri_bytes: 256,
    max_body_bytes: 4096,
};

fuzz_target!(|data: &[u8]| {
    request(data);
    let _ = black_box(parse_response_head(data, &LIMITS, Method::Get));
    let _ = black_box(parse_response_head(data, &LIMITS, Method::Head));
    chunked(data);
});

/// Built once: constructing it is not what is being fuzzed.
fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(build_router)
}

fn build_router() -> Router {
    let action = |cluster| RouteAction {
        cluster,
        ..RouteAction::default()
    };
    let route = |matchers, cluster| Route {
        matchers,
        action: action(cluster),
    };
    Router::new(
        vec![
            route(vec![Matcher::HostWildcard("*.example.com".into())], 1),
            route(
                vec![
                    Matcher::PathPrefix("/api".into()),
                    Matcher::Method("POST".into()),
                ],
                2,
            ),
            route(
                vec![Matcher::Header {
                    name: "x-canary".into(),
                    value: ValueMatch::Exact("1".into()),
                }],
                3,
            ),
            route(
                vec![Matcher::Cookie {
                    name: "beta".into(),
                    value: ValueMatch::Present,
                }],
                4,
            ),
            route(
                vec![Matcher::Query {
                    name: "user".into(),
                    value: ValueMatch::Exact("admin".into()),
                }],
                5,
            ),
        ],
        None,
    )
    .expect("valid route table")
}

fn request(data: &[u8]) {
    let Ok(Some(head)) = parse_request_head(data, &LIMITS) else {
        return;
    };
    assert!(head.head_len() <= data.len());
    black_box(router().route(&head.view(data)));

    let headers = HeaderEdits {
        remove: vec!["cookie".into()],
        set: vec![("X-Tenant".into(), "blue".into())],
        add: vec![("X-Route".into(), "fuzz".into())],
    };
    let rewrite = PrefixRewrite {
        from: "/api".into(),
        to: "/v2/".into(),
    };
    let edits = HeadEdits {
        headers: &headers,
        rewrite_prefix: Some(&rewrite),
        client_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        proto: Proto::Https,
        request_id: b"fuzz-1",
    };
    let mut out = Vec::new();
    rewrite_request_head(&head, data, &edits, &mut out);
    let again = parse_request_head(&out, &Limits::default())
        .expect("a rewritten head is a valid request")
        .expect("a rewritten head is complete");
    assert_eq!(again.head_len(), out.len());
    assert_eq!(again.method_bytes(&out), head.method_bytes(data));
    assert_eq!(again.body(), head.body());
    assert_eq!(again.is_upgrade(), head.is_upgrade());
}

fn chunked(data: &[u8]) {
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let whole = decode(&[data]);
    let pieces = decode(&[&data[..split], &data[split..]]);
    match (whole, pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("split at {split} changed the verdict"),
    }
}

fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), sluice::l7::http::HttpError> {
    let mut decoder = ChunkedDecoder::new(4096, 1024);
    let mut body = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        consumed += decoder.feed(piece, &mut |bytes| body.extend_from_slice(bytes))?;
    }
    Ok((body, consumed, decoder.is_done()))
}
