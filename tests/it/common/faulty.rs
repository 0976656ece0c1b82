//! [`FaultyUpstream`]: a raw DNS server, UDP and TCP on one 127.0.0.1 port, that answers every
//! A question with [`FAULTY_ANSWER`], or misbehaves the way its current [`Fault`] says.
//!
//! It is built from plain sockets and hickory-proto's encoder rather than hickory-server, so it
//! can send what a well-behaved server never would: replies with the wrong ID, for another
//! question or from another port, truncated replies, garbage, TCP resets. Misleading replies
//! carry [`POISON`], so a test can tell whether one was accepted. The fault can be changed while
//! it runs ([`FaultyUpstream::set_fault`]); UDP datagrams and TCP messages received are counted.
//! The server stops when the `FaultyUpstream` is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::upstream::fqdn;

/// The address in every correct answer of a [`FaultyUpstream`].
pub const FAULTY_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// The address in every reply a resolver must not accept.
pub const POISON: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);

/// Gap between a misleading reply and the correct one that follows it.
const FOLLOW_UP_GAP: Duration = Duration::from_millis(20);

/// How a [`FaultyUpstream`] treats each query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer at once.
    None,
    /// Answer after this long (UDP and TCP).
    Delay(Duration),
    /// Never reply: datagrams are read and dropped, TCP connections stay open and silent.
    Drop,
    /// Reply with this response code and no records (SERVFAIL, NOTIMP, FORMERR...).
    Rcode(ResponseCode),
    /// Over UDP, reply with TC set and no records; over TCP, answer in full.
    Truncate,
    /// Over UDP, reply with bytes that are not a DNS message: first a short datagram with
    /// another ID, then one that starts with the query's ID. Never a valid reply.
    Garbage,
    /// Over UDP, reply with another ID (and [`POISON`]), then correctly.
    WrongIdFirst,
    /// Over UDP, reply for another question (with [`POISON`]) under the right ID, then
    /// correctly.
    WrongQuestionFirst,
    /// Over UDP, reply from another port (right ID and question, [`POISON`]), then correctly
    /// from the server's own port.
    WrongSourceFirst,
    /// Over UDP, reply with TC set; over TCP, read the query and reset the connection.
    ResetTcp,
}

/// What the server shares with its tasks.
struct State {
    fault: Mutex<Fault>,
    ttl: u32,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }
}

/// A misbehaving upstream on 127.0.0.1 (UDP and TCP, same port). Stops when dropped.
pub struct FaultyUpstream {
    /// Where it listens, for both UDP and TCP.
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: [JoinHandle<()>; 2],
}

impl FaultyUpstream {
    /// Starts a server behaving as `fault`, its answers with TTL 60.
    pub async fn start(fault: Fault) -> Self {
        Self::start_with_ttl(fault, 60).await
    }

    /// Starts a server behaving as `fault`, its answers with TTL `ttl`.
    pub async fn start_with_ttl(fault: Fault, ttl: u32) -> Self {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("udp local_addr");
        let state = Arc::new(State {
            fault: Mutex::new(fault),
            ttl,
            udp_queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
        });
        let tasks = [
            tokio::spawn(serve_udp(Arc::new(udp), state.clone())),
            tokio::spawn(serve_tcp(tcp, state.clone())),
        ];
        Self { addr, state, tasks }
    }

    /// Changes how the following queries are treated.
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// UDP datagrams received so far (a resolver's retransmissions count apiece).
    pub fn udp_queries(&self) -> usize {
        self.state.udp_queries.load(Ordering::SeqCst)
    }

    /// Messages received over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.state.tcp_queries.load(Ordering::SeqCst)
    }

    /// UDP and TCP queries together.
    pub fn queries(&self) -> usize {
        self.udp_queries() + self.tcp_queries()
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind UDP");
        let addr = udp.local_addr().expect("udp local_addr");
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(error) => last_error = Some(error),
        }
    }
    panic!("no 127.0.0.1 port free for both UDP and TCP: {last_error:?}");
}

async fn serve_udp(socket: Arc<UdpSocket>, state: Arc<State>) {
    let mut buffer = vec![0u8; 65_535];
    loop {
        let Ok((length, client)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        state.udp_queries.fetch_add(1, Ordering::SeqCst);
        let Ok(query) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        // A task per datagram, so a delayed reply holds up nothing else.
        tokio::spawn(reply_udp(socket.clone(), client, query, state.clone()));
    }
}

async fn reply_udp(socket: Arc<UdpSocket>, client: SocketAddr, query: Message, state: Arc<State>) {
    let send = |message: Vec<u8>| {
        let socket = socket.clone();
        async move {
            let _ = socket.send_to(&message, client).await;
        }
    };
    let id = query.metadata.id;
    match state.fault() {
        Fault::None => send(answer(&query, state.ttl)).await,
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            send(answer(&query, state.ttl)).await;
        }
        Fault::Drop => {}
        Fault::Rcode(code) => send(with_rcode(&query, code)).await,
        Fault::Truncate | Fault::ResetTcp => send(truncated(&query)).await,
        Fault::Garbage => {
            send(vec![!(id >> 8) as u8, 0x01, 0xff]).await;
            let mut junk = id.to_be_bytes().to_vec();
            junk.extend_from_slice(&[0xff; 30]);
            send(junk).await;
        }
        Fault::WrongIdFirst => {
            let mut wrong = poisoned(&query, None);
            wrong.metadata.id = id.wrapping_add(1);
            send(wrong.to_vec().expect("encode")).await;
            follow_up(send(answer(&query, state.ttl))).await;
        }
        Fault::WrongQuestionFirst => {
            let wrong = poisoned(
                &query,
                Some(Query::query(fqdn("poison.example"), RecordType::A)),
            );
            send(wrong.to_vec().expect("encode")).await;
            follow_up(send(answer(&query, state.ttl))).await;
        }
        Fault::WrongSourceFirst => {
            let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind UDP");
            let wrong = poisoned(&query, None).to_vec().expect("encode");
            let _ = other.send_to(&wrong, client).await;
            follow_up(send(answer(&query, state.ttl))).await;
        }
    }
}

async fn follow_up(send: impl Future<Output = ()>) {
    tokio::time::sleep(FOLLOW_UP_GAP).await;
    send.await;
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, state.clone()));
        }
    }
}

/// Answers the queries of one connection until the client closes it.
async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut bytes).await.is_err() {
            return;
        }
        state.tcp_queries.fetch_add(1, Ordering::SeqCst);
        let Ok(query) = Message::from_vec(&bytes) else {
            return;
        };
        let reply = match state.fault() {
            Fault::Drop => continue,
            Fault::ResetTcp => {
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = stream.set_zero_linger();
                return;
            }
            Fault::Rcode(code) => with_rcode(&query, code),
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                answer(&query, state.ttl)
            }
            _ => answer(&query, state.ttl),
        };
        let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// A response to `query`: its ID, question and RD, RA set.
fn response(query: &Message) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    reply
}

/// The correct answer: an A record with [`FAULTY_ANSWER`] for an A question, else NODATA.
fn answer(query: &Message, ttl: u32) -> Vec<u8> {
    let mut reply = response(query);
    for question in &query.queries {
        if question.query_type() == RecordType::A {
            let data = RData::A(A(FAULTY_ANSWER));
            reply.add_answer(Record::from_rdata(question.name().clone(), ttl, data));
        }
    }
    reply.to_vec().expect("encode answer")
}

fn with_rcode(query: &Message, code: ResponseCode) -> Vec<u8> {
    let mut reply = response(query);
    reply.metadata.response_code = code;
    reply
        .to_vec()
        .expect("encode a reply with only a response code")
}

fn truncated(query: &Message) -> Vec<u8> {
    let mut reply = response(query);
    reply.metadata.truncation = true;
    reply.to_vec().expect("encode truncated reply")
}

/// A reply a resolver must reject, with [`POISON`] as the answer; for `question` instead of
/// the query's when given.
fn poisoned(query: &Message, question: Option<Query>) -> Message {
    let mut reply = response(query);
    if let Some(question) = question {
        reply.queries = vec![question];
    }
    let name = reply.queries[0].name().clone();
    reply.add_answer(Record::from_rdata(name, 60, RData::A(A(POISON))));
    reply
}
