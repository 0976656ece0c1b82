//! What every client sees regardless of policy: UDP size limits and TC, ANY over UDP, malformed
//! input, and RFC 7766 TCP (pipelining, out-of-order answers, connection limits, timeouts).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The time a TCP client has to take one answer (`src/dns/tcp.rs`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

async fn setup() -> (TestUpstream, TestDaemon) {
    setup_with_txt("big.example.com", 10, 200).await
}

/// An upstream with `www.example.com` and `other.example.com` (A) and `count` TXT strings of
/// about `length` bytes at `txt_name`, and a daemon forwarding to it.
async fn setup_with_txt(txt_name: &str, count: usize, length: usize) -> (TestUpstream, TestDaemon) {
    let text = "t".repeat(length);
    let mut records = vec![
        TestRecord::A("www.example.com", REAL, 300),
        TestRecord::A("other.example.com", REAL, 300),
    ];
    let texts: Vec<String> = (0..count).map(|i| format!("{i:03}{text}")).collect();
    records.extend(
        texts
            .iter()
            .map(|text| TestRecord::Txt(txt_name, text, 300)),
    );
    let upstream = TestUpstream::start(&records).await;
    let daemon =
        TestDaemon::start(&format!("[[upstream]]\naddress = \"{}\"\n", upstream.addr)).await;
    (upstream, daemon)
}

#[tokio::test]
async fn an_answer_too_big_for_udp_is_truncated_and_complete_over_tcp() {
    let (_upstream, daemon) = setup().await;
    for edns in [false, true] {
        let udp = query_udp(daemon.dns, "big.example.com", RecordType::TXT, edns).await;
        assert!(udp.metadata.truncation, "TC over UDP (edns {edns})");
        assert!(udp.answers.is_empty());
        assert_eq!(udp.queries.len(), 1);
    }
    let tcp = query_tcp(daemon.dns, "big.example.com", RecordType::TXT, true).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 10);
}

#[tokio::test]
async fn any_over_udp_gets_tc_and_an_answer_over_tcp() {
    let (upstream, daemon) = setup().await;
    let udp = query_udp(daemon.dns, "www.example.com", RecordType::ANY, true).await;
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    assert_eq!(
        upstream.queries(),
        0,
        "ANY over UDP never reaches the upstream"
    );
    let tcp = query_tcp(daemon.dns, "www.example.com", RecordType::ANY, true).await;
    assert!(!tcp.metadata.truncation);
}

#[tokio::test]
async fn zone_transfers_meta_types_and_other_classes_are_answered_here_not_forwarded() {
    use hickory_proto::rr::DNSClass;

    let (upstream, daemon) = setup().await;
    for (rtype, expected) in [
        (RecordType::AXFR, ResponseCode::NotImp),
        (RecordType::IXFR, ResponseCode::NotImp),
        (RecordType::Unknown(253), ResponseCode::NotImp), // MAILB
        (RecordType::Unknown(254), ResponseCode::NotImp), // MAILA
        (RecordType::TSIG, ResponseCode::FormErr),
        (RecordType::Unknown(249), ResponseCode::FormErr), // TKEY
    ] {
        for tcp in [false, true] {
            let query = build_query("www.example.com", rtype, true);
            let reply = if tcp {
                send_tcp(daemon.dns, &query).await
            } else {
                send_udp(daemon.dns, &query).await
            };
            assert_eq!(rcode(&reply), expected, "{rtype} (TCP {tcp})");
            assert_eq!(reply.queries.len(), 1, "{rtype}: the question is echoed");
        }
    }
    for class in [DNSClass::CH, DNSClass::HS, DNSClass::NONE, DNSClass::ANY] {
        let mut query = build_query("version.bind", RecordType::TXT, true);
        query.queries[0].query_class = class;
        let reply = send_udp(daemon.dns, &query).await;
        assert_eq!(rcode(&reply), ResponseCode::Refused, "{class:?}");
    }
    assert_eq!(upstream.queries(), 0, "none of them reaches the upstream");
    let metrics = daemon.metrics().await;
    let refused = |qtype: &str| {
        let series = format!(
            r#"metasink_queries_total{{device="unknown",profile="meta-apps",qtype="{qtype}",result="refused"}}"#
        );
        metric(&metrics, &series)
    };
    assert_eq!(
        refused("other") + refused("TXT"),
        16.0,
        "counted as refused\n{metrics}"
    );
    let normal = query_udp(daemon.dns, "www.example.com", RecordType::A, true).await;
    assert_eq!(rcode(&normal), ResponseCode::NoError);
}

#[tokio::test]
async fn malformed_input_gets_no_reply_or_formerr_and_never_disturbs_a_normal_client() {
    let (_upstream, daemon) = setup().await;
    let normal = build_query("www.example.com", RecordType::A, true)
        .to_vec()
        .unwrap();
    let mut response = build_query("www.example.com", RecordType::A, false);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let response = response.to_vec().unwrap();
    let mut cut = normal.clone();
    cut.truncate(normal.len() - 5);
    let mut loop_name = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    loop_name.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    let mut bad_counts = normal.clone();
    bad_counts[5] = 9; // nine questions announced, one present

    let cases = [
        ("runt", vec![1u8, 2, 3], false),
        ("a response (QR=1)", response, false),
        ("cut short", cut, true),
        ("compression loop", loop_name, true),
        ("bad counts", bad_counts, true),
    ];
    // All at once (waiting out "no reply" takes the client's whole timeout), with a normal
    // client querying meanwhile.
    let dns = daemon.dns;
    let normal_client = tokio::spawn(async move {
        for _ in 0..20 {
            assert_eq!(
                a_addrs(&query_udp(dns, "www.example.com", RecordType::A, true).await),
                vec![REAL]
            );
        }
    });
    let replies =
        futures_util::future::join_all(cases.iter().map(|(_, bytes, _)| exchange_udp(dns, bytes)))
            .await;
    for ((what, bytes, expect_reply), reply) in cases.iter().zip(replies) {
        match (expect_reply, reply) {
            (false, None) => {}
            (true, Some(reply)) => {
                let reply = Message::from_vec(&reply).expect("a decodable reply");
                assert_eq!(rcode(&reply), ResponseCode::FormErr, "{what}");
                assert_eq!(
                    reply.metadata.id,
                    u16::from_be_bytes([bytes[0], bytes[1]]),
                    "{what}"
                );
            }
            (expected, reply) => panic!("{what}: expected a reply: {expected}, got {reply:?}"),
        }
    }
    // Random bytes, sent without waiting for whatever comes back.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let random: Vec<u8> = (0..6000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for chunk in random.chunks(60) {
        socket.send_to(chunk, dns).await.unwrap();
    }
    normal_client.await.expect("the normal client lost nothing");
    assert_eq!(
        a_addrs(&query_tcp(dns, "www.example.com", RecordType::A, true).await),
        vec![REAL]
    );
}

#[tokio::test]
async fn opcodes_other_than_query_get_notimp() {
    let (_upstream, daemon) = setup().await;
    // With EDNS, the reply carries an OPT too (RFC 6891 §7).
    for edns in [false, true] {
        let mut notify = build_query("www.example.com", RecordType::SOA, edns);
        notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
        let reply = Message::from_vec(
            &exchange_udp(daemon.dns, &notify.to_vec().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rcode(&reply), ResponseCode::NotImp);
        assert_eq!(reply.edns.is_some(), edns, "OPT in the reply");
    }
}

/// Writes `queries` on one TCP connection without waiting, then reads `expect` answers.
async fn pipeline(
    server: SocketAddr,
    queries: &[Message],
    expect: usize,
) -> (Vec<Message>, TcpStream) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(&framed(queries)).await.unwrap();
    let mut replies = Vec::new();
    for _ in 0..expect {
        let length = tokio::time::timeout(Duration::from_secs(3), stream.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut reply = vec![0; usize::from(length)];
        stream.read_exact(&mut reply).await.unwrap();
        replies.push(Message::from_vec(&reply).unwrap());
    }
    (replies, stream)
}

#[tokio::test]
async fn tcp_pipelines_queries_and_answers_them_out_of_order() {
    let slow = TestUpstream::start(&[TestRecord::A("slow.example.com", REAL, 60)]).await;
    let dead = TestUpstream::start_unresponsive();
    // The first upstream never answers, so a forwarded query takes the full attempt time;
    // blocked names are answered at once.
    let config = format!(
        "[[upstream]]\naddress = \"{}\"\n\n[[upstream]]\naddress = \"{}\"\n",
        dead.addr, slow.addr
    );
    let daemon = TestDaemon::start(&config).await;
    let mut queries = vec![build_query("slow.example.com", RecordType::A, false)];
    queries.extend((0..10).map(|_| build_query("www.meta.ai", RecordType::A, false)));
    let (replies, _stream) = pipeline(daemon.dns, &queries, queries.len()).await;
    let first_id = queries[0].metadata.id;
    assert_ne!(
        replies[0].metadata.id, first_id,
        "blocked answers overtake the slow one"
    );
    assert_eq!(replies.last().unwrap().metadata.id, first_id);
    assert_eq!(a_addrs(replies.last().unwrap()), vec![REAL]);
    let mut ids: Vec<_> = replies.iter().map(|reply| reply.metadata.id).collect();
    let mut sent: Vec<_> = queries.iter().map(|query| query.metadata.id).collect();
    ids.sort_unstable();
    sent.sort_unstable();
    assert_eq!(ids, sent, "every query answered once");
}

#[tokio::test]
async fn a_tcp_connection_answers_at_most_100_queries_then_closes() {
    let (_upstream, daemon) = setup().await;
    let queries: Vec<_> = (0..101)
        .map(|_| build_query("www.meta.ai", RecordType::A, false))
        .collect();
    let (replies, mut stream) = pipeline(daemon.dns, &queries, 100).await;
    assert_eq!(replies.len(), 100);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed after 100 answers, nothing more: {read:?}"
    );
}

#[tokio::test]
async fn a_client_gets_at_most_16_connections_and_others_are_not_affected() {
    let (_upstream, daemon) = setup().await;
    let greedy = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let mut held = Vec::new();
    for _ in 0..16 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(greedy, 0)).unwrap();
        held.push(socket.connect(daemon.dns).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(greedy, 0)).unwrap();
    let mut seventeenth = socket.connect(daemon.dns).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), seventeenth.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the 17th is closed at once: {read:?}"
    );
    // Another client still gets answers over TCP.
    assert_eq!(
        a_addrs(&query_tcp(daemon.dns, "www.example.com", RecordType::A, false).await),
        vec![REAL]
    );
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_first_message_timeout() {
    let (_upstream, daemon) = setup().await;
    let mut stream = TcpStream::connect(daemon.dns).await.unwrap();
    let started = Instant::now();
    // Announce a 40-byte message and dribble a byte per second.
    stream.write_all(&[0, 40]).await.unwrap();
    let mut closed = false;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stream.write_all(&[0]).await.is_err() {
            closed = true;
            break;
        }
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(10), stream.read(&mut byte)).await
        {
            closed = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(closed, "still open after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(7),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (_upstream, daemon) = setup().await;
    let (replies, mut stream) = pipeline(
        daemon.dns,
        &[build_query("www.meta.ai", RecordType::A, false)],
        1,
    )
    .await;
    assert_eq!(replies.len(), 1);
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(14), stream.read_to_end(&mut rest)).await;
    let elapsed = started.elapsed();
    assert!(matches!(read, Ok(Ok(0))), "closed by the server: {read:?}");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(12),
        "{elapsed:?}"
    );
}

/// The TCP connection cap of a daemon with plenty of descriptors (`src/fd_budget.rs`).
const TCP_CAP: usize = 256;

/// Opens `per_client` TCP connections from each of `clients` addresses 127.0.<net>.1.. (the
/// limit per client is 16), oldest first.
async fn open_connections(
    server: SocketAddr,
    net: u8,
    clients: u8,
    per_client: usize,
) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for client in 1..=clients {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, net, client));
        for _ in 0..per_client {
            held.push(connect_tcp_from(source, server).await.unwrap());
        }
    }
    held
}

/// Whether the daemon closes `stream` (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(wait, stream.read(&mut byte)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// `www.example.com A` from `source` over a new TCP connection: answered?
async fn answered_over_tcp_from(source: IpAddr, server: SocketAddr) -> bool {
    let query = build_query("www.example.com", RecordType::A, false);
    let reply = exchange_tcp_from(source, server, &query.to_vec().unwrap()).await;
    reply.is_some_and(|reply| a_addrs(&Message::from_vec(&reply).unwrap()) == [REAL])
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_slot_of_the_oldest_idle_one() {
    let (_upstream, daemon) = setup().await;
    // 16 clients of 16 connections each: the limit per client is never what refuses.
    let mut held = open_connections(daemon.dns, 1, 16, 16).await;
    assert_eq!(held.len(), TCP_CAP);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newcomer = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    assert!(answered_over_tcp_from(newcomer, daemon.dns).await);
    assert!(
        closed_within(&mut held[0], Duration::from_millis(500)).await,
        "the oldest idle connection made room"
    );
}

/// Issue 12 (6): 17 addresses of 16 connections, each asking once every 2 s, held every slot
/// and another client's TCP query was reset.
#[tokio::test]
async fn slow_but_alive_connections_from_many_addresses_cannot_keep_a_new_client_out() {
    let (_upstream, daemon) = setup().await;
    let held = open_connections(daemon.dns, 1, 17, 16).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut alive = tokio::task::JoinSet::new();
    for mut stream in held {
        let stop = stop.clone();
        alive.spawn(async move {
            let query = framed(&[build_query("www.example.com", RecordType::A, false)]);
            // Until the daemon closes it: a query, its answer, 2 s of quiet.
            while stream.write_all(&query).await.is_ok() {
                let Ok(length) = stream.read_u16().await else {
                    return;
                };
                let mut reply = vec![0; usize::from(length)];
                if stream.read_exact(&mut reply).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for client in 1..=3 {
        let newcomer = IpAddr::V4(Ipv4Addr::new(127, 0, 3, client));
        assert!(
            answered_over_tcp_from(newcomer, daemon.dns).await,
            "new client {client} answered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    alive.join_all().await;
}

#[tokio::test]
async fn above_three_quarters_of_the_cap_idle_connections_are_closed_after_a_second() {
    let (_upstream, daemon) = setup().await;
    // 208 of 256: each asks once, then stays quiet.
    let mut held = open_connections(daemon.dns, 1, 13, 16).await;
    let query = framed(&[build_query("www.example.com", RecordType::A, false)]);
    for stream in &mut held {
        stream.write_all(&query).await.unwrap();
    }
    for stream in &mut held {
        let length = stream.read_u16().await.unwrap();
        stream
            .read_exact(&mut vec![0; usize::from(length)])
            .await
            .unwrap();
    }
    let answered = Instant::now();
    for stream in &mut held {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "still open {:?} after its answer",
            answered.elapsed()
        );
    }
    assert!(
        answered.elapsed() < Duration::from_secs(3),
        "{:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    // 100 answers of about 30 KB each: 3 MB, far more than the daemon's send buffer, our
    // receive buffer and the answers it holds in memory together.
    let (_upstream, daemon) = setup_with_txt("huge.example.com", 120, 250).await;
    let one = query_tcp(daemon.dns, "huge.example.com", RecordType::TXT, false).await;
    assert_eq!(one.answers.len(), 120, "the answer is as big as planned");

    let mut stream = ask_for_huge_answers(daemon.dns, 100).await;
    let sent = Instant::now();

    // Meanwhile everyone else is answered at once, over UDP and TCP.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let others = Instant::now();
    let udp = query_udp(daemon.dns, "www.example.com", RecordType::A, false).await;
    let tcp = query_tcp(daemon.dns, "www.example.com", RecordType::A, false).await;
    assert_eq!((a_addrs(&udp), a_addrs(&tcp)), (vec![REAL], vec![REAL]));
    assert!(others.elapsed() < Duration::from_secs(1));

    // Past the write timeout, the stalled connection is given up: reading now yields what
    // the kernel had buffered, then the end, well short of 100 answers.
    tokio::time::sleep((WRITE_TIMEOUT + Duration::from_secs(2)).saturating_sub(sent.elapsed()))
        .await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the daemon closed the connection");
    let answers = count_frames(&received);
    assert!(
        answers < 50,
        "closed after {answers} answers ({read:?}, {} bytes)",
        received.len()
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_reset_not_left_to_a_lingering_close() {
    // 16 answers of about 30 KB (480 KB) fill the daemon's send buffer and ours, and 16 is
    // what the daemon answers at once: it has read every query when it gives up. (A query
    // left unread would make the kernel reset the connection on close anyway, fix or not.)
    let (_upstream, daemon) = setup_with_txt("huge.example.com", 120, 250).await;
    let one = query_tcp(daemon.dns, "huge.example.com", RecordType::TXT, false).await;
    assert_eq!(one.answers.len(), 120, "the answer is as big as planned");

    let stream = ask_for_huge_answers(daemon.dns, 16).await;
    let sent = Instant::now();
    // A plain close would queue the daemon's FIN behind the answers we never read: it could
    // not reach us, and the kernel would keep the socket and its buffer. A reset is not held
    // back by a full window: it arrives, and shows as the socket's pending error without our
    // reading anything (reading would let the stalled answers flow again).
    let error = loop {
        if let Some(error) = stream.take_error().unwrap() {
            break error;
        }
        assert!(
            sent.elapsed() < WRITE_TIMEOUT + Duration::from_secs(3),
            "no reset {:?} after the last query",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    assert!(
        sent.elapsed() >= WRITE_TIMEOUT - Duration::from_millis(500),
        "reset before the write timeout: {:?}",
        sent.elapsed()
    );
}

/// Opens a connection with a 4 KB receive buffer and writes `count` pipelined questions for
/// `huge.example.com` TXT (see `setup_with_txt`) without reading anything.
async fn ask_for_huge_answers(server: SocketAddr, count: usize) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let queries: Vec<_> = (0..count)
        .map(|_| build_query("huge.example.com", RecordType::TXT, false))
        .collect();
    stream.write_all(&framed(&queries)).await.unwrap();
    stream
}

/// `queries` as TCP frames (RFC 1035 §4.2.2: a 2-byte length before each), back to back.
fn framed(queries: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for query in queries {
        let message = query.to_vec().unwrap();
        bytes.extend_from_slice(&(message.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&message);
    }
    bytes
}

/// The complete length-prefixed messages at the start of `bytes`.
fn count_frames(mut bytes: &[u8]) -> usize {
    let mut count = 0;
    while let [high, low, rest @ ..] = bytes {
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        let Some(tail) = rest.get(length..) else {
            break;
        };
        count += 1;
        bytes = tail;
    }
    count
}

#[tokio::test]
async fn pipelining_past_the_limit_costs_no_answer_and_the_connection_ends_cleanly() {
    // 101 queries for answers of about 30 KB to a client with a small receive buffer: when
    // the daemon stops reading, the last answers still sit in its send buffer and the 101st
    // query is unread. Closing right then would reset the connection and drop those answers.
    let (_upstream, daemon) = setup_with_txt("huge.example.com", 120, 250).await;
    let mut stream = ask_for_huge_answers(daemon.dns, 101).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the daemon ended the connection");
    assert!(read.is_ok(), "a clean end, not a reset: {read:?}");
    assert_eq!(count_frames(&received), 100);
}
