//! One route table, and requests in, verdicts out.
// Tables are tuples on purpose: one row per case, read left to right.
#![allow(clippy::type_complexity)]

use super::*;
use crate::l7::http::{parse_request_head, HttpError, Limits};

fn action(cluster: u32) -> RouteAction {
    RouteAction {
        cluster,
        ..RouteAction::default()
    }
}

fn route(matchers: Vec<Matcher>, cluster: u32) -> Route {
    Route {
        matchers,
        action: action(cluster),
    }
}

fn exact(value: &str) -> ValueMatch {
    ValueMatch::Exact(value.to_string())
}

fn s(value: &str) -> String {
    value.to_string()
}

/// Order matters: first match wins.
#[rustfmt::skip]
fn routes() -> Vec<Route> {
    use Matcher::*;
    vec![
        route(vec![HostExact(s("api.example.com")), PathPrefix(s("/v1"))], 1),
        route(vec![HostExact(s("api.example.com")), Method(s("POST")), PathExact(s("/upload"))], 2),
        route(vec![HostWildcard(s("*.static.example.com"))], 3),
        route(vec![Header { name: s("X-Canary"), value: exact("1") }, PathPrefix(s("/"))], 4),
        route(vec![Cookie { name: s("beta"), value: exact("yes") }], 5),
        route(vec![Query { name: s("debug"), value: ValueMatch::Present }], 6),
        route(vec![Query { name: s("user"), value: exact("admin") }], 7),
        route(vec![PathPrefix(s("/admin/"))], 8),
        route(vec![PathExact(s("/caf%C3%A9"))], 9),
        route(vec![HostExact(s("[::1]"))], 10),
        route(vec![Header { name: s("authorization"), value: ValueMatch::Present }, PathPrefix(s("/private"))], 11),
    ]
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Cluster(u32),
    NotFound,
    Rejected(HttpError),
}
use Verdict::*;

fn verdict(router: &Router, request: &str) -> Verdict {
    let bytes = request.as_bytes();
    match parse_request_head(bytes, &Limits::default()) {
        Ok(Some(head)) => match router.route(&head.view(bytes)) {
            Some(action) => Cluster(action.cluster),
            None => NotFound,
        },
        Ok(None) => panic!("incomplete: {request}"),
        Err(e) => Rejected(e),
    }
}

fn get(target: &str, host: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

#[test]
fn requests_route_to_the_first_matching_route() {
    let router = Router::new(routes(), Some(action(99))).expect("valid table");
    #[rustfmt::skip]
    let cases: &[(&str, String, Verdict)] = &[
        ("host and prefix", get("/v1/users", "api.example.com", ""), Cluster(1)),
        ("prefix itself", get("/v1", "api.example.com", ""), Cluster(1)),
        ("host is case-insensitive, port ignored", get("/v1/x", "API.Example.COM:8443", ""), Cluster(1)),
        ("trailing dot ignored", get("/v1/x", "api.example.com.", ""), Cluster(1)),
        ("prefix is segment-aware", get("/v1x", "api.example.com", ""), Cluster(99)),
        ("other host, same path", get("/v1/users", "www.example.com", ""), Cluster(99)),
        ("absolute-form authority overrides Host", get("http://api.example.com/v1/x", "www.example.com", ""), Cluster(1)),
        ("method and exact path", "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n".into(), Cluster(2)),
        ("method mismatch", get("/upload", "api.example.com", ""), Cluster(99)),
        ("methods are case-sensitive", "post /upload HTTP/1.1\r\nHost: api.example.com\r\n\r\n".into(), Cluster(99)),
        ("exact path is exact", "POST /upload/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n".into(), Cluster(99)),
        ("wildcard, one label", get("/", "img.static.example.com", ""), Cluster(3)),
        ("wildcard, two labels", get("/", "a.b.static.example.com:80", ""), Cluster(3)),
        ("wildcard is case-insensitive", get("/", "IMG.Static.Example.Com", ""), Cluster(3)),
        ("wildcard does not match the apex", get("/", "static.example.com", ""), Cluster(99)),
        ("wildcard needs the dot", get("/", "evilstatic.example.com", ""), Cluster(99)),
        ("header exact", get("/", "a", "X-Canary: 1\r\n"), Cluster(4)),
        ("header name is case-insensitive", get("/", "a", "x-CANARY: 1\r\n"), Cluster(4)),
        ("header value is exact", get("/", "a", "X-Canary: 01\r\n"), Cluster(99)),
        ("any header line may match", get("/", "a", "X-Canary: 0\r\nX-Canary: 1\r\n"), Cluster(4)),
        ("earlier route wins over a later match", get("/v1/x", "api.example.com", "X-Canary: 1\r\n"), Cluster(1)),
        ("cookie", get("/", "a", "Cookie: a=b; beta=yes\r\n"), Cluster(5)),
        ("cookie on a second Cookie line", get("/", "a", "Cookie: a=b\r\nCookie: beta=yes\r\n"), Cluster(5)),
        ("cookie value mismatch", get("/", "a", "Cookie: beta=no\r\n"), Cluster(99)),
        ("cookie name is exact", get("/", "a", "Cookie: xbeta=yes; Beta=yes\r\n"), Cluster(99)),
        ("first cookie of that name decides", get("/", "a", "Cookie: beta=no; beta=yes\r\n"), Cluster(99)),
        ("query present without value", get("/?debug", "a", ""), Cluster(6)),
        ("query present with value", get("/x?a=1&debug=0", "a", ""), Cluster(6)),
        ("query name is whole", get("/?nodebug=1", "a", ""), Cluster(99)),
        ("query exact", get("/?user=admin", "a", ""), Cluster(7)),
        ("query name percent-decoded", get("/?us%65r=admin", "a", ""), Cluster(7)),
        ("query value percent-decoded", get("/?user=%61dmin", "a", ""), Cluster(7)),
        ("query value mismatch", get("/?user=admin2", "a", ""), Cluster(99)),
        ("query value is case-sensitive", get("/?user=Admin", "a", ""), Cluster(99)),
        ("plus is not decoded", get("/?user=ad+min", "a", ""), Cluster(99)),
        ("prefix with trailing slash", get("/admin/users", "a", ""), Cluster(8)),
        ("prefix with trailing slash, bare", get("/admin/", "a", ""), Cluster(8)),
        ("prefix with trailing slash needs it", get("/admin", "a", ""), Cluster(99)),
        ("escape hex case is ignored", get("/caf%c3%a9", "a", ""), Cluster(9)),
        ("IPv6 literal host with port", get("/", "[::1]:8080", ""), Cluster(10)),
        ("header present", get("/private/x", "a", "Authorization: Bearer t\r\n"), Cluster(11)),
        ("header present, empty value", get("/private", "a", "Authorization:\r\n"), Cluster(11)),
        ("header absent", get("/private/x", "a", ""), Cluster(99)),
        ("1.0 without Host matches no host route", "GET /v1/x HTTP/1.0\r\n\r\n".into(), Cluster(99)),
        // Spellings a backend would read as another route never reach the
        // router.
        ("encoded letter to dodge a prefix", get("/%61dmin/users", "a", ""), Rejected(HttpError::AmbiguousPath)),
        ("dot segments to dodge a prefix", get("/x/../admin/users", "a", ""), Rejected(HttpError::AmbiguousPath)),
        ("merged slashes to dodge a prefix", get("//admin/users", "a", ""), Rejected(HttpError::AmbiguousPath)),
        ("raw non-ASCII", get("/caf\u{e9}", "a", ""), Rejected(HttpError::BadTarget)),
    ];
    for (description, request, want) in cases {
        assert_eq!(&verdict(&router, request), want, "{description}");
    }
}

#[test]
fn no_match_without_default_is_404() {
    let router = Router::new(routes(), None).expect("valid table");
    #[rustfmt::skip]
    let cases: &[(&str, String, Verdict)] = &[
        ("matching route", get("/v1", "api.example.com", ""), Cluster(1)),
        ("no route", get("/", "www.example.com", ""), NotFound),
        ("asterisk-form matches no path route", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".into(), NotFound),
    ];
    for (description, request, want) in cases {
        assert_eq!(&verdict(&router, request), want, "{description}");
    }
    let empty = Router::new(Vec::new(), None).expect("valid");
    assert_eq!(verdict(&empty, &get("/", "a", "")), NotFound);
    let catch_all = Router::new(vec![route(Vec::new(), 5)], None).expect("valid");
    assert_eq!(verdict(&catch_all, &get("/", "a", "")), Cluster(5));
}

#[test]
fn invalid_route_tables_are_refused() {
    use Matcher::*;
    let edits = |headers: HeaderEdits| RouteAction {
        request_headers: headers,
        ..RouteAction::default()
    };
    #[rustfmt::skip]
    let cases: &[(&str, Matcher, RouteAction)] = &[
        ("host with port", HostExact(s("a.example:80")), action(1)),
        ("host with wildcard", HostExact(s("*.example")), action(1)),
        ("empty host", HostExact(s("")), action(1)),
        ("wildcard in the middle", HostWildcard(s("a.*.example")), action(1)),
        ("bare wildcard", HostWildcard(s("*")), action(1)),
        ("relative path prefix", PathPrefix(s("api")), action(1)),
        ("path the parser refuses", PathExact(s("/a/../b")), action(1)),
        ("encoded unreserved in a path", PathPrefix(s("/%61")), action(1)),
        ("method with space", Method(s("GE T")), action(1)),
        ("header name with colon", Header { name: s("X:A"), value: ValueMatch::Present }, action(1)),
        ("header value with CRLF", Header { name: s("X-A"), value: exact("a\r\nb") }, action(1)),
        ("cookie name with semicolon", Cookie { name: s("a;b"), value: ValueMatch::Present }, action(1)),
        ("empty query name", Query { name: s(""), value: ValueMatch::Present }, action(1)),
        ("edit of a framing field", PathPrefix(s("/")), edits(HeaderEdits { remove: vec![s("Transfer-Encoding")], ..HeaderEdits::default() })),
        ("rewrite to a relative path", PathPrefix(s("/")), RouteAction { rewrite_prefix: Some(PrefixRewrite { from: s("/a"), to: s("b") }), ..RouteAction::default() }),
    ];
    for (description, matcher, action) in cases {
        let table = vec![
            route(Vec::new(), 0),
            Route {
                matchers: vec![matcher.clone()],
                action: action.clone(),
            },
        ];
        let error = Router::new(table, None).expect_err(description);
        assert_eq!(error.route, Some(1), "{description}: {error}");
    }
    let bad_default = edits(HeaderEdits {
        add: vec![(s("Connection"), s("close"))],
        ..HeaderEdits::default()
    });
    let error = Router::new(Vec::new(), Some(bad_default)).expect_err("bad default");
    assert_eq!(error.route, None);
    assert!(error.to_string().starts_with("default route: "), "{error}");
}

#[test]
fn route_actions_carry_their_edits() {
    let with_edits = RouteAction {
        cluster: 3,
        request_headers: HeaderEdits {
            add: vec![(s("X-Route"), s("api"))],
            ..HeaderEdits::default()
        },
        response_headers: HeaderEdits {
            remove: vec![s("Server")],
            ..HeaderEdits::default()
        },
        rewrite_prefix: Some(PrefixRewrite {
            from: s("/api"),
            to: s("/"),
        }),
        redirect: None,
    };
    let router = Router::new(
        vec![Route {
            matchers: vec![Matcher::PathPrefix(s("/api"))],
            action: with_edits.clone(),
        }],
        None,
    )
    .expect("valid");
    let request = get("/api/x", "a", "");
    let head = parse_request_head(request.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        router.route(&head.view(request.as_bytes())),
        Some(&with_edits)
    );
}

#[test]
fn query_and_cookie_lookups() {
    let request = get(
        "/?a=1&b&c=%41%2&%64=4",
        "h",
        "Cookie: x=1;y=2 ; z=\"q\"\r\n",
    );
    let bytes = request.as_bytes();
    let head = parse_request_head(bytes, &Limits::default())
        .unwrap()
        .unwrap();
    let view = head.view(bytes);
    #[rustfmt::skip]
    let cases: &[(&str, Option<&[u8]>, Option<&[u8]>)] = &[
        ("a", view.query_param(b"a"), Some(b"1")),
        ("b without =", view.query_param(b"b"), Some(b"")),
        ("c raw value", view.query_param(b"c"), Some(b"%41%2")),
        ("encoded name", view.query_param(b"d"), Some(b"4")),
        ("absent", view.query_param(b"e"), None),
        ("cookie x", view.cookie(b"x"), Some(b"1")),
        ("cookie y, spaces trimmed", view.cookie(b"y"), Some(b"2")),
        ("cookie z, quotes kept", view.cookie(b"z"), Some(b"\"q\"")),
        ("cookie absent", view.cookie(b"w"), None),
    ];
    for (description, got, want) in cases {
        assert_eq!(got, want, "{description}");
    }
    #[rustfmt::skip]
    let decoded: &[(&[u8], &[u8], bool)] = &[
        (b"%41%2", b"A%2", true),
        (b"%4", b"%4", true),
        (b"a%zz", b"a%zz", true),
        (b"%41", b"%41", false),
        (b"ab", b"abc", false),
        (b"abc", b"ab", false),
    ];
    for (raw, literal, want) in decoded {
        assert_eq!(
            decoded_eq(raw, literal),
            *want,
            "{:?} vs {:?}",
            raw,
            literal
        );
    }
}

#[test]
fn sni_routes_match_the_server_name_not_the_host() {
    use Matcher::*;
    let router = Router::new(
        vec![
            route(vec![SniExact(s("a.example")), PathPrefix(s("/v1"))], 1),
            route(vec![SniWildcard(s("*.b.example"))], 2),
            route(vec![HostExact(s("a.example"))], 3),
        ],
        Some(action(99)),
    )
    .expect("valid table");
    let head = |req: &str| {
        parse_request_head(req.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    };
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>, &str, Option<u32>)] = &[
        ("exact name and prefix", Some("a.example"), &get("/v1/x", "other", ""), Some(1)),
        ("exact name, case-insensitive", Some("A.EXAMPLE"), &get("/v1", "other", ""), Some(1)),
        ("name matches, path does not", Some("a.example"), &get("/v2", "a.example", ""), Some(3)),
        ("wildcard, one label", Some("x.b.example"), &get("/", "a.example", ""), Some(2)),
        ("wildcard, two labels", Some("y.x.b.example"), &get("/", "zz", ""), Some(2)),
        ("wildcard is not the parent", Some("b.example"), &get("/", "zz", ""), Some(99)),
        ("no SNI matches no sni route", None, &get("/v1", "a.example", ""), Some(3)),
        ("no SNI, nothing else", None, &get("/", "zz", ""), Some(99)),
    ];
    for &(what, sni, req, want) in cases {
        let h = head(req);
        let got = router
            .route_id_sni(&h.view(req.as_bytes()), sni)
            .and_then(|id| router.action(id))
            .map(|a| a.cluster);
        // SNI arrives lowercase from rustls; the comparison does not care.
        assert_eq!(got, want, "{what}");
    }
    // Bad names are refused when the table is built.
    for bad in [SniExact(s("a b")), SniWildcard(s("a.*.b")), SniExact(s(""))] {
        assert!(
            Router::new(vec![route(vec![bad.clone()], 1)], None).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn redirect_actions_are_checked() {
    let redirect = |status, port| RouteAction {
        redirect: Some(HttpsRedirect { status, port }),
        ..RouteAction::default()
    };
    for (status, port, ok) in [
        (301, None, true),
        (308, Some(8443), true),
        (302, None, false),
        (307, None, false),
        (308, Some(0), false),
    ] {
        let r = Router::new(Vec::new(), Some(redirect(status, port)));
        assert_eq!(r.is_ok(), ok, "{status} {port:?}");
    }
}
