//! Operations against the real binary: a database that drops the relay's connections, a broken
//! schema, API clients that send nothing or half a request, the API connection cap, shutdown
//! with stalled clients, control-frame floods and protocol violations, and the metric series a
//! fresh relay already shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::time::Duration;

use nano_crypto::CryptoMode;
use nano_proto::{BindingKind, RelayFrame};
use relay_common::{
    Config, PgDb, Relay, Ws, metric, random_id, send_frame, start_with_alice_and_bob,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

/// Longest any single wait here may take.
const WAIT: Duration = Duration::from_secs(20);

fn api_addr(relay: &Relay) -> String {
    relay.api.trim_start_matches("http://").to_owned()
}

/// Reads from `s` until the relay closes it; `Err` if it is still open after `within`.
async fn closed_by_relay(s: &mut TcpStream, within: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// Polls `/ready` until it answers `want`; the body of the last answer.
async fn ready_becomes(relay: &Relay, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = relay.get_json("/ready").await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_relay_on_postgres_survives_the_server_closing_its_connections() {
    let Some(db) = PgDb::create("relay survives pg restart") else {
        return;
    };
    let cfg = Config::new().storage_url(&db.url);
    let (relay, alice, bob) = start_with_alice_and_bob(&cfg).await;
    ready_becomes(&relay, 200).await;
    let (mut a, _) = alice.connect(&relay).await;
    let (mut b, _) = bob.connect(&relay).await;
    for round in 0..3 {
        // What a database restart does to the relay: every connection closed by the server.
        assert!(db.terminate_connections() >= 1, "round {round}");
        ready_becomes(&relay, 200).await;
        let id = random_id();
        a.send(&send_frame(
            "bob",
            "after the restart",
            CryptoMode::Hybrid,
            Some(id),
        ))
        .await;
        assert_eq!(a.expect_sent().await, (id, false), "round {round}");
        let m = b.expect_message().await;
        assert_eq!(m.id, id);
        b.ack(vec![id]).await;
        // The ack is applied before the next round closes the connections under it (else its
        // refusal, `unavailable`, would arrive where the next message is expected).
        while !b.fetch_all(0).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (status, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn ready_is_503_while_a_table_the_relay_needs_is_gone() {
    let relay = Relay::start(&Config::new()).await;
    ready_becomes(&relay, 200).await;
    let db = relay.db_path();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("DROP TABLE messages").unwrap();
    })
    .await
    .unwrap();
    let body = ready_becomes(&relay, 503).await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["reason"], "storage not usable");
}

#[tokio::test]
async fn api_connections_that_send_nothing_or_half_a_request_are_closed() {
    let cfg = Config::new().set("limits", "http_header_timeout_seconds", 1);
    let relay = Relay::start(&cfg).await;
    let addr = api_addr(&relay);
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for (what, s) in [
        ("silent", &mut silent),
        ("half a request", &mut half),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(
            closed_by_relay(s, Duration::from_secs(10)).await.is_ok(),
            "{what}: still open"
        );
    }
    // The API still answers.
    assert_eq!(relay.get("/health").await.0, 200);
}

#[tokio::test]
async fn a_slow_request_body_is_answered_408() {
    let cfg = Config::new().set("limits", "http_request_timeout_seconds", 1);
    let relay = Relay::start(&cfg).await;
    let mut s = TcpStream::connect(api_addr(&relay)).await.unwrap();
    s.write_all(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn the_api_holds_at_most_max_http_connections() {
    let cfg = Config::new().set("limits", "max_http_connections", 2).set(
        "limits",
        "http_header_timeout_seconds",
        3,
    );
    let relay = Relay::start(&cfg).await;
    let addr = api_addr(&relay);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Both slots are taken: a third connection is not served while they are held.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "answered beyond the cap"
    );
    // Once the held ones are closed (by their header timeout), the third is answered.
    for s in &mut held {
        closed_by_relay(s, Duration::from_secs(10)).await.unwrap();
    }
    let mut answer = Vec::new();
    timeout(WAIT, third.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_finishes_whatever_stalled_clients_do() {
    // A header timeout longer than the drain: only the shutdown's deadline can end the stall.
    let cfg = Config::new().set("limits", "http_header_timeout_seconds", 600);
    let (mut relay, alice, _bob) = start_with_alice_and_bob(&cfg).await;
    let mut api = TcpStream::connect(api_addr(&relay)).await.unwrap();
    api.write_all(b"GET /health HTT").await.unwrap();
    // A WebSocket client that logged in and then never reads again.
    let (stalled, _) = alice.connect(&relay).await;
    // One that finished the TCP handshake only.
    let _tcp_only = TcpStream::connect(relay.ws.trim_start_matches("ws://"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let status = relay.terminate().await;
    assert!(status.success(), "exit status {status:?}\n{}", relay.logs());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[tokio::test]
async fn a_fresh_relay_shows_every_known_series() {
    let relay = Relay::start(&Config::new()).await;
    let text = relay.metrics().await;
    for mode in ["classical", "hybrid", "quantum"] {
        let s = format!("nano_messenger_messages_processed_total{{crypto_mode=\"{mode}\"}}");
        assert_eq!(metric(&text, &s), Some(0.0), "{s}");
        let s = format!(
            "nano_messenger_message_processing_duration_seconds_count{{crypto_mode=\"{mode}\"}}"
        );
        assert_eq!(metric(&text, &s), Some(0.0), "{s}");
    }
    for code in nano_proto::ErrorCode::ALL {
        let s = format!("nano_messenger_errors_total{{code=\"{}\"}}", code.as_str());
        assert_eq!(metric(&text, &s), Some(0.0), "{s}");
    }
    for reason in ["max_connections", "slow_reader", "rate_limited"] {
        let s = format!("nano_messenger_connections_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &s), Some(0.0), "{s}");
    }
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_and_closed_with_policy() {
    let cfg = Config::new()
        .set("security", "rate_limit_per_connection", 5)
        .set("security", "rate_limit_burst", 5);
    let relay = Relay::start(&cfg).await;
    let mut ws = Ws::connect(&relay.ws).await;
    for _ in 0..50 {
        if !ws.try_send_raw(Message::Ping(Vec::new().into())).await {
            break;
        }
    }
    let (_, close) = ws.closed().await;
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(
        close.reason.as_str(),
        "rate limit exceeded by control frames"
    );
    let text = relay.metrics().await;
    assert!(metric(&text, "nano_messenger_errors_total{code=\"rate_limited\"}").unwrap() >= 1.0);
}

/// Sends raw frame `f` on a fresh connection; expects a 1002 close with
/// `reason`.
async fn expect_protocol_close(relay: &Relay, f: Frame, reason: &str) {
    let mut ws = Ws::connect(&relay.ws).await;
    ws.send_raw(Message::Frame(f)).await;
    let (_, close) = ws.closed().await;
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Protocol);
    assert_eq!(close.reason.as_str(), reason);
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_a_reason() {
    let relay = Relay::start(&Config::new()).await;
    // RSV1 set without a negotiated extension (compression was never offered).
    let mut f = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    f.header_mut().rsv1 = true;
    expect_protocol_close(
        &relay,
        f,
        "reserved bits set without a negotiated extension",
    )
    .await;
    // A continuation frame with no first frame.
    let f = Frame::message(b"x".to_vec(), OpCode::Data(Data::Continue), true);
    expect_protocol_close(&relay, f, "continuation frame without a first frame").await;
    // A frame the relay answers normally afterwards on a fresh connection.
    let mut ws = Ws::connect(&relay.ws).await;
    assert_eq!(ws.challenge().await.channel_binding, BindingKind::None);
}

#[tokio::test]
async fn http_errors_are_counted_like_websocket_ones() {
    let relay = Relay::start(&Config::new()).await;
    let (status, _) = relay.post_raw("/v1/users", "{").await;
    assert_eq!(status, 400);
    let (status, _) = relay.get_json("/v1/users/nobody").await;
    assert_eq!(status, 404);
    let text = relay.metrics().await;
    assert_eq!(
        metric(
            &text,
            "nano_messenger_errors_total{code=\"malformed_body\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "nano_messenger_errors_total{code=\"not_found\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let relay = Relay::start(&Config::new()).await;
    let mut ws = Ws::connect(&relay.ws).await;
    ws.send_raw(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        },
    )))
    .await;
    let (_, close) = ws.closed().await;
    assert_eq!(
        close.expect("the relay's close frame").code,
        CloseCode::Normal
    );
}

/// Every error answer of the API is the JSON error body, even where the framework would answer
/// in plain text (a path segment that is not UTF-8) or where no route matches.
#[tokio::test]
async fn path_errors_get_the_json_error_body() {
    let relay = Relay::start(&Config::new()).await;
    let (status, body) = relay.get_json("/v1/users/%FF").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_field");
    let (status, body) = relay.get_json("/nope").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["message"], "no such path");
}

/// A `send_message` refused for the rate names its id (so a client can write it again), and a
/// client at its data rate may still answer pings: only a flood of control frames closes.
#[tokio::test]
async fn a_rate_limited_send_names_its_id_and_pings_keep_their_own_budget() {
    let cfg = Config::new()
        .set("security", "rate_limit_per_connection", 1)
        .set("security", "rate_limit_burst", 2);
    let (relay, alice, _bob) = start_with_alice_and_bob(&cfg).await;
    // Logging in takes the burst; the next sends are over the rate.
    let (mut a, _) = alice.connect(&relay).await;
    let mut refused = None;
    for _ in 0..4 {
        let id = random_id();
        a.send(&send_frame("bob", "x", CryptoMode::Hybrid, Some(id)))
            .await;
        if let RelayFrame::Error { code, id: got, .. } = a.recv().await
            && code.as_str() == "rate_limited"
        {
            refused = Some((id, got));
            break;
        }
    }
    let (id, got) = refused.expect("a send refused for the rate");
    assert_eq!(got, Some(id));
    // Over the data rate, a ping is still answered and the connection stays open.
    a.send_raw(Message::Ping(b"still here".to_vec().into()))
        .await;
    loop {
        match a.next_raw().await {
            Some(Message::Pong(p)) => {
                assert_eq!(&p[..], b"still here");
                break;
            }
            Some(Message::Close(c)) => panic!("closed: {c:?}"),
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    }
}

/// A client that pipelines requests and never reads the answers cannot hold an API connection
/// slot: its stalled writes end the connection and the next client is served.
#[tokio::test]
async fn a_client_that_stops_reading_its_answers_loses_its_api_connection() {
    let cfg = Config::new().set("limits", "max_http_connections", 1).set(
        "limits",
        "http_request_timeout_seconds",
        2,
    );
    let relay = Relay::start(&cfg).await;
    let addr: std::net::SocketAddr = api_addr(&relay).parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let mut stalled = sock.connect(addr).await.unwrap();
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..400 {
        if timeout(Duration::from_millis(200), stalled.write_all(request))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, next.read_to_end(&mut answer))
        .await
        .expect("the next client was never served")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(stalled);
}

/// Keep-alive while the API has room; `Connection: close` once fewer than a quarter of its
/// connection slots are free, so idle keep-alive connections cannot crowd out new clients.
#[tokio::test]
async fn a_crowded_api_closes_connections_after_answering() {
    let relay = Relay::start(&Config::new().set("limits", "max_http_connections", 4)).await;
    let addr: std::net::SocketAddr = api_addr(&relay).parse().unwrap();
    async fn health(s: &mut TcpStream) -> String {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = String::new();
        while !got.ends_with("{\"status\":\"ok\"}") {
            let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed before the answer: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got.to_ascii_lowercase()
    }
    let mut first = TcpStream::connect(addr).await.unwrap();
    let quiet = health(&mut first).await;
    assert!(quiet.starts_with("http/1.1 200"), "{quiet}");
    assert!(!quiet.contains("connection: close"), "{quiet}");
    // More idle keep-alive connections take slots until answers start closing theirs.
    let mut kept = Vec::new();
    let mut closing = None;
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if health(&mut s).await.contains("connection: close") {
            closing = Some(s);
            break;
        }
        kept.push(s);
    }
    let mut closing = closing.expect("no answer closed its connection with every slot taken");
    // That connection is closed after its answer, so its slot is free again.
    let mut rest = Vec::new();
    let n = timeout(WAIT, closing.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    // With the room back, answers keep the connection alive again.
    drop(kept);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = health(&mut first).await;
    assert!(!again.contains("connection: close"), "{again}");
}
