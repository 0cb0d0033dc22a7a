//! Sessions end to end: a client and a server [`Connection`] over an
//! in-memory pipe, and a server driven frame by frame from a hand-made peer.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::frame::{FLAG_FIN, Frame, FrameDecoder, FrameEncoder, rst};
use super::*;

struct Pair {
    client: Connection,
    client_incoming: mpsc::Receiver<Stream>,
    server: Connection,
    server_incoming: mpsc::Receiver<Stream>,
}

fn pair(pipe_capacity: usize) -> Pair {
    let (a, b) = tokio::io::duplex(pipe_capacity);
    let (client, client_incoming) = Connection::client(a);
    let (server, server_incoming) = Connection::server(b);
    Pair {
        client,
        client_incoming,
        server,
        server_incoming,
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn streams_carry_headers_and_data_both_ways_with_half_close() {
    let mut p = pair(64 * 1024);
    let server = tokio::spawn(async move {
        let mut handlers = Vec::new();
        for _ in 0..3 {
            let mut stream = p.server_incoming.recv().await.expect("a stream");
            handlers.push(tokio::spawn(async move {
                assert_eq!(stream.id() % 2, 1, "client stream ids are odd");
                let kind = stream.header("StreamType").expect("streamtype").to_owned();
                assert_eq!(stream.headers()[0].0, "streamtype");
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                let mut answer = format!("{kind}:").into_bytes();
                answer.extend_from_slice(&got);
                stream.write_all(&answer).await.unwrap();
                stream.close_write().await.unwrap();
                // A second FIN is refused, naming the stream.
                let err = stream.close_write().await.unwrap_err();
                assert!(err.to_string().contains(&stream.id().to_string()), "{err}");
            }));
        }
        for h in handlers {
            h.await.unwrap();
        }
        p.server
    });

    let mut clients = Vec::new();
    for kind in ["stdin", "stdout", "stderr"] {
        let conn = p.client.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = conn
                .open(headers(&[("streamType", kind), ("port", "80")]))
                .await
                .unwrap();
            assert_eq!(stream.header("port"), Some("80"));
            let body = pattern(100_000, kind.len() as u8);
            stream.write_all(&body).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let mut expected = format!("{kind}:").into_bytes();
            expected.extend_from_slice(&body);
            assert!(answer == expected, "stream {kind} echoed wrong data");
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let server = server.await.unwrap();
    p.client.close().await;
    server.closed().await;
    assert!(server.is_closed());
}

#[tokio::test]
async fn reset_fails_reads_and_writes_on_both_sides() {
    let mut p = pair(64 * 1024);
    let mut client_stream = p.client.open(headers(&[("a", "1")])).await.unwrap();
    let mut server_stream = p.server_incoming.recv().await.unwrap();

    client_stream.write_all(b"before reset").await.unwrap();
    let mut buf = [0u8; 12];
    server_stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before reset");

    server_stream.reset();
    let err = client_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(err.to_string().contains("CANCEL"), "{err}");
    let err = client_stream.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    let err = server_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    // The session itself lives on.
    let mut next = p.client.open(headers(&[("a", "2")])).await.unwrap();
    let (mut reader, writer) = p.server_incoming.recv().await.unwrap().split();
    assert!(next.id() > client_stream.id());
    next.write_all(b"ok").await.unwrap();
    drop(writer);
    let mut got = [0u8; 2];
    reader.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ok");
    // The server dropped its writer: the client sees FIN.
    let mut rest = Vec::new();
    next.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn pings_are_answered_both_ways() {
    let p = pair(4096);
    for _ in 0..3 {
        p.client.ping().await.unwrap();
        p.server.ping().await.unwrap();
    }
}

#[tokio::test]
async fn server_opens_streams_to_the_client_too() {
    let mut p = pair(4096);
    let mut from_server = p.server.open(headers(&[("x", "y")])).await.unwrap();
    assert_eq!(from_server.id() % 2, 0, "server stream ids are even");
    let mut at_client = p.client_incoming.recv().await.unwrap();
    assert_eq!(at_client.header("x"), Some("y"));
    from_server.write_all(b"hello").await.unwrap();
    from_server.shutdown().await.unwrap();
    let mut got = String::new();
    at_client.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello");
}

#[tokio::test]
async fn large_payloads_flow_both_ways_at_once() {
    const LEN: usize = 6 * 1024 * 1024;
    let mut p = pair(16 * 1024);
    let up = pattern(LEN, 1);
    let down = pattern(LEN, 2);
    let client_stream = p.client.open(headers(&[("streamtype", "data")])).await.unwrap();
    let server_stream = p.server_incoming.recv().await.unwrap();

    let (mut cr, mut cw) = client_stream.split();
    let (mut sr, mut sw) = server_stream.split();
    let up_copy = up.clone();
    let down_copy = down.clone();
    let tasks = [
        tokio::spawn(async move {
            cw.write_all(&up_copy).await.unwrap();
            cw.shutdown().await.unwrap();
            Vec::new()
        }),
        tokio::spawn(async move {
            sw.write_all(&down_copy).await.unwrap();
            sw.shutdown().await.unwrap();
            Vec::new()
        }),
        tokio::spawn(async move {
            let mut got = Vec::new();
            // Small reads keep the receive buffer full most of the time.
            let mut chunk = [0u8; 1000];
            loop {
                let n = sr.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break got;
                }
                got.extend_from_slice(&chunk[..n]);
            }
        }),
        tokio::spawn(async move {
            let mut got = Vec::new();
            cr.read_to_end(&mut got).await.unwrap();
            got
        }),
    ];
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results[2] == up, "client-to-server payload corrupted");
    assert!(results[3] == down, "server-to-client payload corrupted");
}

/// A reader that stops reading must stop the writer too, after a bounded
/// amount: its receive buffer, the sender's queue and the pipe.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_reader_bounds_what_the_writer_gets_rid_of() {
    const LEN: usize = 16 * 1024 * 1024;
    let mut p = pair(16 * 1024);
    let mut client_stream = p.client.open(Headers::new()).await.unwrap();
    let mut server_stream = p.server_incoming.recv().await.unwrap();

    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; MAX_DATA_CHUNK];
        while counter.load(Ordering::SeqCst) < LEN {
            client_stream.write_all(&chunk).await.unwrap();
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        client_stream.shutdown().await.unwrap();
    });

    // Let every task run until the writer makes no more progress.
    let mut last = usize::MAX;
    let mut still = 0;
    while still < 200 {
        tokio::task::yield_now().await;
        let now = written.load(Ordering::SeqCst);
        if now == last {
            still += 1;
        } else {
            still = 0;
            last = now;
        }
    }
    let bound = RECV_BUFFER + SEND_BUFFER + 4 * MAX_DATA_CHUNK + 256 * 1024;
    assert!(last < bound, "writer got {last} bytes out with nobody reading");
    assert!(last >= RECV_BUFFER, "only {last} bytes were buffered");

    // Reading again lets everything through.
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = server_stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, LEN);
    writer.await.unwrap();
}

#[tokio::test]
async fn a_vanished_peer_fails_streams_and_resolves_closed() {
    let mut p = pair(64 * 1024);
    let mut client_stream = p.client.open(Headers::new()).await.unwrap();
    let server_stream = p.server_incoming.recv().await.unwrap();
    let waiting = {
        let conn = p.client.clone();
        tokio::spawn(async move { conn.closed().await })
    };

    // The server drops the socket without GOAWAY.
    p.server.abort();
    p.server.closed().await;
    drop(server_stream);

    let mut buf = [0u8; 8];
    let err = client_stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    assert!(err.to_string().contains(&client_stream.id().to_string()), "{err}");
    waiting.await.unwrap();
    let err = client_stream.write_all(b"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    assert!(matches!(
        p.client.open(Headers::new()).await,
        Err(SpdyError::ConnectionClosed)
    ));
    assert!(matches!(p.client.ping().await, Err(SpdyError::ConnectionClosed)));
    assert!(p.client_incoming.recv().await.is_none());
}

#[tokio::test]
async fn close_delivers_what_was_written_before_it() {
    let mut p = pair(4096);
    let mut client_stream = p.client.open(Headers::new()).await.unwrap();
    let mut server_stream = p.server_incoming.recv().await.unwrap();
    let body = pattern(300_000, 9);
    // Written in the background: the pipe is smaller than the body.
    let server = p.server.clone();
    let sent = body.clone();
    let closing = tokio::spawn(async move {
        server_stream.write_all(&sent).await.unwrap();
        server_stream.shutdown().await.unwrap();
        server.close().await;
    });
    let mut got = Vec::new();
    client_stream.read_to_end(&mut got).await.unwrap();
    assert!(got == body, "data written before close() was lost");
    closing.await.unwrap();
    p.client.closed().await;
    assert!(p.server_incoming.recv().await.is_none());
}

#[tokio::test]
async fn goaway_from_the_peer_refuses_new_streams() {
    let (a, mut peer) = tokio::io::duplex(4096);
    let (client, _incoming) = Connection::client(a);
    let mut enc = FrameEncoder::new();
    let mut buf = BytesMut::new();
    enc.encode(
        &Frame::GoAway {
            last_good_stream_id: 0,
            status: 0,
        },
        &mut buf,
    )
    .unwrap();
    peer.write_all(&buf).await.unwrap();
    // A PING answered after the GOAWAY proves the GOAWAY was read.
    let pinger = client.clone();
    let ping = tokio::spawn(async move { pinger.ping().await });
    let mut dec = FrameDecoder::new();
    let mut wire = BytesMut::new();
    let frame = next_frame(&mut peer, &mut dec, &mut wire).await;
    let Frame::Ping { id } = frame else {
        panic!("expected PING, got {frame:?}");
    };
    buf.clear();
    enc.encode(&Frame::Ping { id }, &mut buf).unwrap();
    peer.write_all(&buf).await.unwrap();
    ping.await.unwrap().unwrap();
    assert!(matches!(
        client.open(Headers::new()).await,
        Err(SpdyError::GoingAway)
    ));
}

async fn next_frame(io: &mut DuplexStream, dec: &mut FrameDecoder, buf: &mut BytesMut) -> Frame {
    loop {
        if let Some(frame) = dec.decode(buf).unwrap() {
            return frame;
        }
        let n = io.read_buf(buf).await.unwrap();
        assert!(n > 0, "connection closed while a frame was expected");
    }
}

/// The server as a Go client sees it on the wire.
#[tokio::test]
async fn server_speaks_spdystream_on_the_wire() {
    let (io, mut peer) = tokio::io::duplex(256 * 1024);
    let (server, mut incoming) = Connection::server(io);
    let mut enc = FrameEncoder::new();
    let mut dec = FrameDecoder::new();
    let mut wire = BytesMut::new();
    let mut send = async |frames: &[Frame], peer: &mut DuplexStream| {
        let mut buf = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut buf).unwrap();
        }
        peer.write_all(&buf).await.unwrap();
    };

    send(
        &[
            Frame::Settings {
                entries: vec![(0, 7, 65536)],
            },
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::Ping { id: 1 },
            // Even ids are the server's: refused.
            Frame::SynStream {
                stream_id: 4,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("streamtype", "bogus")]),
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"stdin data"),
            },
        ],
        &mut peer,
    )
    .await;
    // Unknown control frame types are skipped by their length.
    peer.write_all(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 2, 0xab, 0xcd])
        .await
        .unwrap();

    assert_eq!(
        next_frame(&mut peer, &mut dec, &mut wire).await,
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new(),
        }
    );
    assert_eq!(
        next_frame(&mut peer, &mut dec, &mut wire).await,
        Frame::Ping { id: 1 }
    );
    assert_eq!(
        next_frame(&mut peer, &mut dec, &mut wire).await,
        Frame::RstStream {
            stream_id: 4,
            status: rst::PROTOCOL_ERROR,
        }
    );

    let mut stream = incoming.recv().await.unwrap();
    assert_eq!(stream.id(), 1);
    assert_eq!(stream.header("streamType"), Some("error"));
    let mut got = String::new();
    stream.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "stdin data");

    let body = pattern(100_000, 3);
    stream.write_all(&body).await.unwrap();
    drop(stream);
    let mut received = Vec::new();
    loop {
        match next_frame(&mut peer, &mut dec, &mut wire).await {
            Frame::Data {
                stream_id: 1,
                flags,
                data,
            } => {
                assert!(data.len() <= MAX_DATA_CHUNK, "DATA frame of {}", data.len());
                received.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("expected DATA on stream 1, got {other:?}"),
        }
    }
    assert!(received == body);

    // A second stream shares the header compression state with the first.
    send(
        &[Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 0,
            flags: FLAG_FIN,
            headers: headers(&[("streamtype", "resize"), ("requestid", "0")]),
        }],
        &mut peer,
    )
    .await;
    let resize = incoming.recv().await.unwrap();
    assert_eq!(resize.header("requestid"), Some("0"));
    assert_eq!(
        next_frame(&mut peer, &mut dec, &mut wire).await,
        Frame::SynReply {
            stream_id: 3,
            flags: 0,
            headers: Headers::new(),
        }
    );

    server.close().await;
    assert_eq!(
        next_frame(&mut peer, &mut dec, &mut wire).await,
        Frame::GoAway {
            last_good_stream_id: 3,
            status: 0,
        }
    );
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn garbage_from_the_peer_ends_the_session_with_goaway() {
    let (io, mut peer) = tokio::io::duplex(4096);
    let (server, _incoming) = Connection::server(io);
    // A SYN_STREAM whose header block is not zlib at all.
    peer.write_all(&[
        0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
    ])
    .await
    .unwrap();
    let mut dec = FrameDecoder::new();
    let mut wire = BytesMut::new();
    let frame = next_frame(&mut peer, &mut dec, &mut wire).await;
    assert!(
        matches!(frame, Frame::GoAway { status: 1, .. }),
        "expected GOAWAY PROTOCOL_ERROR, got {frame:?}"
    );
    server.closed().await;
}

/// Data for a stream whose reader was dropped is discarded instead of
/// filling its buffer and stalling every other stream of the session.
#[tokio::test]
async fn a_dropped_reader_does_not_stall_the_session() {
    let mut p = pair(16 * 1024);
    let mut ignored = p.client.open(Headers::new()).await.unwrap();
    let (reader, _writer) = p.server_incoming.recv().await.unwrap().split();
    drop(reader);
    let flood = vec![1u8; 4 * RECV_BUFFER];
    ignored.write_all(&flood).await.unwrap();

    let mut other = p.client.open(Headers::new()).await.unwrap();
    let mut other_at_server = p.server_incoming.recv().await.unwrap();
    other.write_all(b"still flowing").await.unwrap();
    other.shutdown().await.unwrap();
    let mut got = String::new();
    other_at_server.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "still flowing");
}
