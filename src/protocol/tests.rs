//! The protocol's frames checked both ways: every client frame parses as the protocol says, bad
//! ones are refused, server frames have the documented JSON, and arbitrary text never panics.

use super::*;

#[test]
fn parses_every_client_frame() {
    assert_eq!(
        parse_client_text(r#"{"type":"input","data":"ls\r"}"#),
        Ok(Request::Input("ls\r".into()))
    );
    assert_eq!(
        parse_client_text(r#"{"type":"resize","cols":120,"rows":40}"#),
        Ok(Request::Resize(TermSize {
            cols: 120,
            rows: 40
        }))
    );
    assert_eq!(parse_client_text(r#"{"type":"pause"}"#), Ok(Request::Pause));
    assert_eq!(
        parse_client_text(r#"{"type":"resume"}"#),
        Ok(Request::Resume)
    );
    assert_eq!(parse_client_text(r#"{"type":"stay"}"#), Ok(Request::Stay));
    for (text, id) in [
        (r#"{"type":"ping","id":{"a":[1]}}"#, r#"{"a":[1]}"#),
        (r#"{"type":"ping"}"#, "null"),
        (r#"{"type":"ping","id":null}"#, "null"),
        // Past u64 and past f64's precision: the pong must carry these digits, not a float.
        (
            r#"{"id":123456789012345678901234567890,"type":"ping"}"#,
            "123456789012345678901234567890",
        ),
        (
            r#"{"type":"ping","id":0.10000000000000000001}"#,
            "0.10000000000000000001",
        ),
    ] {
        match parse_client_text(text) {
            Ok(Request::Ping(got)) => assert_eq!(got.json().get(), id, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn unknown_fields_are_ignored_for_compatibility() {
    assert_eq!(
        parse_client_text(r#"{"type":"pause","future":true}"#),
        Ok(Request::Pause)
    );
}

#[test]
fn bad_frames_are_bad_requests() {
    for text in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"type":"nope"}"#,
        r#"{"type":"input"}"#,
        r#"{"type":"input","data":5}"#,
        r#"{"type":"resize","cols":"80","rows":24}"#,
        r#"{"type":"resize","cols":80.5,"rows":24}"#,
        r#"{"type":"resize","cols":1e30,"rows":24}"#,
    ] {
        let err = parse_client_text(text).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{text}");
    }
}

#[test]
fn out_of_range_sizes_are_refused() {
    for (c, r) in [
        (0, 24),
        (80, 0),
        (1001, 24),
        (80, 1001),
        (-1, 5),
        (i64::MAX, 1),
    ] {
        let text = format!(r#"{{"type":"resize","cols":{c},"rows":{r}}}"#);
        assert_eq!(
            parse_client_text(&text).unwrap_err().code,
            ErrorCode::ResizeRefused
        );
    }
    assert!(TermSize::checked(1, 1).is_some());
    assert!(TermSize::checked(1000, 1000).is_some());
}

fn ready() -> ServerFrame<'static> {
    ServerFrame::Ready(Ready {
        protocol: PROTOCOL_VERSION,
        session: "s".into(),
        user: "u".into(),
        container: None,
        mode: "local".into(),
        cols: 80,
        rows: 24,
        resumed: false,
    })
}

#[test]
fn server_frames_match_the_protocol() {
    assert_eq!(
        ready().to_json(),
        r#"{"type":"ready","protocol":1,"session":"s","user":"u","container":null,"mode":"local","cols":80,"rows":24,"resumed":false}"#
    );
    assert_eq!(
        ServerFrame::Exit(Exit { code: Some(3) }).to_json(),
        r#"{"type":"exit","code":3}"#
    );
    assert_eq!(
        ServerFrame::error(ErrorCode::ResizeRefused, "m").to_json(),
        r#"{"type":"error","code":"resize_refused","message":"m"}"#
    );
    let Ok(Request::Ping(id)) = parse_client_text(r#"{"type":"ping","id":-18446744073709551617}"#)
    else {
        panic!("a ping");
    };
    assert_eq!(
        ServerFrame::Pong(Pong { id }).to_json(),
        r#"{"type":"pong","id":-18446744073709551617}"#
    );
}

#[test]
fn server_frames_parse_back_into_the_same_frames() {
    let frames = [
        ready(),
        ServerFrame::Exit(Exit { code: None }),
        ServerFrame::error(ErrorCode::SessionNotFound, "gone"),
        ServerFrame::Pong(Pong {
            id: PingId::new("123456789012345678901234567890").unwrap(),
        }),
        ServerFrame::Pong(Pong {
            id: PingId::default(),
        }),
    ];
    for frame in frames {
        let text = frame.to_json();
        let back = ServerFrame::from_json(&text).unwrap();
        assert_eq!(back, frame, "{text}");
        assert_eq!(back.to_json(), text);
    }
}

#[test]
fn client_frames_serialize_into_what_the_server_parses() {
    let frames = [
        (
            ClientFrame::Input {
                data: "ls\r".into(),
            },
            Request::Input("ls\r".into()),
        ),
        (
            ClientFrame::Resize { cols: 9, rows: 8 },
            Request::Resize(TermSize { cols: 9, rows: 8 }),
        ),
        (ClientFrame::Pause, Request::Pause),
        (ClientFrame::Resume, Request::Resume),
        (
            ClientFrame::Ping {
                id: PingId::new("0.10000000000000000001").unwrap(),
            },
            Request::Ping(PingId::new("0.10000000000000000001").unwrap()),
        ),
    ];
    for (frame, request) in frames {
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(parse_client_text(&text), Ok(request), "{text}");
    }
}

mod fuzz {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever text a client sends: no panic, and a resize is only ever accepted in range.
        #[test]
        fn any_text_frame_parses_or_is_refused(text in ".{0,200}") {
            if let Ok(Request::Resize(size)) = parse_client_text(&text) {
                prop_assert!(SIZE_RANGE.contains(&size.cols) && SIZE_RANGE.contains(&size.rows));
            }
        }

        #[test]
        fn json_shaped_frames_never_panic(
            kind in prop::sample::select(vec!["input", "resize", "pause", "resume", "ping", "x", ""]),
            cols in any::<i64>(), rows in any::<i64>(), data in ".{0,40}",
        ) {
            let frame = serde_json::json!({"type": kind, "cols": cols, "rows": rows, "data": data, "id": data});
            match parse_client_text(&frame.to_string()) {
                Ok(Request::Resize(size)) => {
                    prop_assert_eq!((i64::from(size.cols), i64::from(size.rows)), (cols, rows));
                }
                Err(e) if kind == "resize" => prop_assert_eq!(e.code, ErrorCode::ResizeRefused),
                _ => {}
            }
        }
    }
}
