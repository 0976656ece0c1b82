//! loadgen: a small DNS-over-UDP load generator for `scripts/bench`.
//!
//! One thread (pin it to a core of its own), many connected non-blocking UDP sockets, `ppoll`
//! for readiness. Two ways to load a server, one way to wait for it:
//!
//! - **max rate** (closed loop): keep `--outstanding` queries in flight for `--duration`
//!   seconds; each answer or timeout makes room for the next query. QPS = answers received
//!   within the duration / duration. Latency is measured from the actual send.
//! - **fixed rate** (open loop, `--rate QPS`): query k is due at start + k / rate whatever the
//!   answers do; latency is measured from the time the query was *due*, so a generator or
//!   server that falls behind shows up in the latency instead of hiding (no coordinated
//!   omission).
//! - `--max-queries N` stops after N queries (warming a cache: `--max-queries 1000`).
//! - `wait`: query a name every `--interval-ms` until the answer is what `--expect` says, then
//!   exit 0 (used to time how long a server takes to load its lists).
//!
//! Input: a query file in dnsperf format, `NAME [TYPE]` per line (TYPE defaults to A; `#`
//! lines are comments). The file is replayed in order and wrapped. In a name, `{seq}` is
//! replaced by a token unique to this run and query (`<salt>-<counter>`), so a one-line file
//! `u{seq}.bench.test A` asks a name never asked before on every query (nothing can be cached).
//!
//! Output: one line of `key=value` pairs on stdout (see `Report::print`), for scripts.
//! Latencies come from a log-linear histogram (1 µs buckets to 2 ms, then 0.1 %).

use std::collections::VecDeque;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage:
  loadgen run  --server IP:PORT --file QUERIES [--duration SECS] [--rate QPS]
               [--outstanding N] [--sockets N] [--timeout-ms MS] [--max-queries N] [--edns]
  loadgen wait --server IP:PORT --name NAME [--type A] [--expect blocked|answer|any]
               [--timeout-s SECS] [--interval-ms MS] [--pid PID]

run: closed loop with N outstanding (default 100) for --duration (default 10) seconds, or open
     loop at --rate QPS; sockets default 16, timeout 1000 ms. Prints one key=value line.
wait: exit 0 once NAME is answered as --expect says (blocked = A 0.0.0.0, AAAA :: or NXDOMAIN;
      answer = NOERROR with an answer; any = any response); 1 on timeout, 2 if --pid exits.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => RunArgs::parse(&args[1..]).and_then(|a| run(&a)),
        Some("wait") => WaitArgs::parse(&args[1..]).and_then(|a| wait(&a)),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("missing command\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(64)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments

struct RunArgs {
    server: SocketAddr,
    file: String,
    duration: Duration,
    rate: Option<f64>,
    outstanding: usize,
    sockets: usize,
    timeout: Duration,
    max_queries: Option<u64>,
    edns: bool,
}

struct WaitArgs {
    server: SocketAddr,
    name: String,
    qtype: u16,
    expect: Expect,
    timeout: Duration,
    interval: Duration,
    pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Blocked,
    Answer,
    Any,
}

fn take<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(value: &str, flag: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

fn address(value: &str) -> Result<SocketAddr, String> {
    value
        .to_socket_addrs()
        .map_err(|e| format!("--server {value}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {value}: no address"))
}

impl RunArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (mut server, mut file) = (None, None);
        let mut parsed = RunArgs {
            server: "127.0.0.1:53".parse().unwrap(),
            file: String::new(),
            duration: Duration::from_secs(10),
            rate: None,
            outstanding: 100,
            sockets: 16,
            timeout: Duration::from_millis(1000),
            max_queries: None,
            edns: false,
        };
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            match flag {
                "--server" => server = Some(address(take(args, &mut i, flag)?)?),
                "--file" => file = Some(take(args, &mut i, flag)?.to_owned()),
                "--duration" => {
                    let secs: f64 = number(take(args, &mut i, flag)?, flag)?;
                    if !(secs > 0.0 && secs < 86400.0) {
                        return Err("--duration must be between 0 and 86400 seconds".into());
                    }
                    parsed.duration = Duration::from_secs_f64(secs);
                }
                "--rate" => {
                    let rate: f64 = number(take(args, &mut i, flag)?, flag)?;
                    if rate.is_nan() || rate <= 0.0 {
                        return Err("--rate must be positive".into());
                    }
                    parsed.rate = Some(rate);
                }
                "--outstanding" => parsed.outstanding = number(take(args, &mut i, flag)?, flag)?,
                "--sockets" => parsed.sockets = number(take(args, &mut i, flag)?, flag)?,
                "--timeout-ms" => {
                    let ms: u64 = number(take(args, &mut i, flag)?, flag)?;
                    parsed.timeout = Duration::from_millis(ms.max(1));
                }
                "--max-queries" => {
                    parsed.max_queries = Some(number(take(args, &mut i, flag)?, flag)?)
                }
                "--edns" => parsed.edns = true,
                _ => return Err(format!("run: unknown argument {flag}\n{USAGE}")),
            }
            i += 1;
        }
        parsed.server = server.ok_or("run: --server is required")?;
        parsed.file = file.ok_or("run: --file is required")?;
        if parsed.sockets == 0 || parsed.sockets > 1024 {
            return Err("--sockets must be 1..1024".into());
        }
        if parsed.outstanding == 0 {
            return Err("--outstanding must be at least 1".into());
        }
        Ok(parsed)
    }
}

impl WaitArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (mut server, mut name) = (None, None);
        let mut parsed = WaitArgs {
            server: "127.0.0.1:53".parse().unwrap(),
            name: String::new(),
            qtype: 1,
            expect: Expect::Any,
            timeout: Duration::from_secs(120),
            interval: Duration::from_millis(10),
            pid: None,
        };
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            match flag {
                "--server" => server = Some(address(take(args, &mut i, flag)?)?),
                "--name" => name = Some(take(args, &mut i, flag)?.to_owned()),
                "--type" => parsed.qtype = qtype(take(args, &mut i, flag)?)?,
                "--expect" => {
                    parsed.expect = match take(args, &mut i, flag)? {
                        "blocked" => Expect::Blocked,
                        "answer" => Expect::Answer,
                        "any" => Expect::Any,
                        other => {
                            return Err(format!("--expect: blocked, answer or any, not {other}"));
                        }
                    }
                }
                "--timeout-s" => {
                    let secs: f64 = number(take(args, &mut i, flag)?, flag)?;
                    parsed.timeout = Duration::from_secs_f64(secs.clamp(0.01, 86400.0));
                }
                "--interval-ms" => {
                    let ms: u64 = number(take(args, &mut i, flag)?, flag)?;
                    parsed.interval = Duration::from_millis(ms.max(1));
                }
                "--pid" => parsed.pid = Some(number(take(args, &mut i, flag)?, flag)?),
                _ => return Err(format!("wait: unknown argument {flag}\n{USAGE}")),
            }
            i += 1;
        }
        parsed.server = server.ok_or("wait: --server is required")?;
        parsed.name = name.ok_or("wait: --name is required")?;
        Ok(parsed)
    }
}

// ---------------------------------------------------------------------------------------------
// DNS wire format (just enough to ask and to read an answer's header)

fn qtype(text: &str) -> Result<u16, String> {
    let upper = text.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "DS" => 43,
        "DNSKEY" => 48,
        "SVCB" => 64,
        "HTTPS" => 65,
        "ANY" => 255,
        _ => match upper.strip_prefix("TYPE").unwrap_or(&upper).parse() {
            Ok(n) => n,
            Err(_) => return Err(format!("unknown query type {text}")),
        },
    })
}

/// Appends the wire form of `name` (no compression).
fn push_name(buf: &mut Vec<u8>, name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("bad name {name}"));
            }
            buf.push(label.len() as u8);
            buf.extend_from_slice(label.as_bytes());
        }
    }
    buf.push(0);
    if buf.len() > 12 + 255 {
        return Err(format!("name too long: {name}"));
    }
    Ok(())
}

/// A query with ID 0 and RD set; `edns` adds an OPT record (1232-byte payload, no DO).
fn build_query(buf: &mut Vec<u8>, name: &str, qtype: u16, edns: bool) -> Result<(), String> {
    buf.clear();
    buf.extend_from_slice(&[0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8]);
    push_name(buf, name)?;
    buf.extend_from_slice(&qtype.to_be_bytes());
    buf.extend_from_slice(&[0, 1]); // class IN
    if edns {
        buf.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    Ok(())
}

/// Skips a (possibly compressed) name starting at `pos`; returns the offset after it.
fn skip_name(packet: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *packet.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l <= 63 => pos += 1 + l as usize,
            _ => return None,
        }
    }
}

/// Is this response a blocked answer: NXDOMAIN, or an A 0.0.0.0 / AAAA :: record?
fn is_blocked_answer(packet: &[u8]) -> bool {
    if packet.len() < 12 {
        return false;
    }
    let rcode = packet[3] & 0x0f;
    if rcode == 3 {
        return true;
    }
    if rcode != 0 {
        return false;
    }
    let qd = u16::from_be_bytes([packet[4], packet[5]]);
    let an = u16::from_be_bytes([packet[6], packet[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        match skip_name(packet, pos) {
            Some(p) => pos = p + 4,
            None => return false,
        }
    }
    for _ in 0..an {
        let Some(p) = skip_name(packet, pos) else {
            return false;
        };
        let Some(fixed) = packet.get(p..p + 10) else {
            return false;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let Some(rdata) = packet.get(p + 10..p + 10 + rdlen) else {
            return false;
        };
        if (rtype == 1 || rtype == 28) && rdata.iter().all(|&b| b == 0) {
            return true;
        }
        pos = p + 10 + rdlen;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Queries

enum Query {
    /// Wire form with ID 0.
    Fixed(Vec<u8>),
    /// A name with `{seq}` in it: built at send time.
    Template {
        before: String,
        after: String,
        qtype: u16,
    },
}

struct Queries {
    list: Vec<Query>,
    next: usize,
    salt: String,
    counter: u64,
    edns: bool,
    scratch: Vec<u8>,
}

impl Queries {
    fn load(path: &str, edns: bool) -> Result<Self, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        let mut list = Vec::new();
        let mut buf = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default();
            let qtype = qtype(words.next().unwrap_or("A"))
                .map_err(|e| format!("{path}:{}: {e}", number + 1))?;
            if let Some((before, after)) = name.split_once("{seq}") {
                // Check the shape once with a sample token.
                build_query(&mut buf, &format!("{before}x0000000-0{after}"), qtype, edns)
                    .map_err(|e| format!("{path}:{}: {e}", number + 1))?;
                list.push(Query::Template {
                    before: before.to_owned(),
                    after: after.to_owned(),
                    qtype,
                });
            } else {
                build_query(&mut buf, name, qtype, edns)
                    .map_err(|e| format!("{path}:{}: {e}", number + 1))?;
                list.push(Query::Fixed(buf.clone()));
            }
        }
        if list.is_empty() {
            return Err(format!("{path}: no queries"));
        }
        // A salt unique to this run: the wall clock in base 36.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok(Self {
            list,
            next: 0,
            salt: base36(nanos ^ (std::process::id() as u64) << 40),
            counter: 0,
            edns,
            scratch: Vec::with_capacity(512),
        })
    }

    /// The next query's wire form (ID 0), in file order, wrapping.
    fn next_query(&mut self) -> &mut [u8] {
        let index = self.next;
        self.next = if index + 1 == self.list.len() {
            0
        } else {
            index + 1
        };
        match &self.list[index] {
            Query::Fixed(wire) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(wire);
            }
            Query::Template {
                before,
                after,
                qtype,
            } => {
                self.counter += 1;
                let name = format!("{before}{}-{}{after}", self.salt, self.counter);
                // Shape checked at load time; only the token changed.
                let _ = build_query(&mut self.scratch, &name, *qtype, self.edns);
            }
        }
        &mut self.scratch
    }
}

fn base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    let text = String::from_utf8(out).unwrap_or_default();
    // 7 characters are enough to tell runs apart.
    text[text.len().saturating_sub(7)..].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: 1 µs buckets below 2048 µs, then 1024 buckets per power of two.

struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: f64,
    max_us: u64,
}

impl Histogram {
    const LINEAR: u64 = 2048;
    const SUB_BITS: u32 = 10;

    fn new() -> Self {
        Self {
            counts: vec![0; Self::LINEAR as usize + (64 - 11) * (1 << Self::SUB_BITS)],
            total: 0,
            sum_us: 0.0,
            max_us: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us < Self::LINEAR {
            return us as usize;
        }
        let exponent = 63 - us.leading_zeros(); // >= 11
        let sub = (us >> (exponent - Self::SUB_BITS)) & ((1 << Self::SUB_BITS) - 1);
        Self::LINEAR as usize + ((exponent - 11) as usize) * (1 << Self::SUB_BITS) + sub as usize
    }

    fn lower_bound(index: usize) -> u64 {
        if (index as u64) < Self::LINEAR {
            return index as u64;
        }
        let rest = index - Self::LINEAR as usize;
        let exponent = (rest >> Self::SUB_BITS) as u32 + 11;
        let sub = (rest & ((1 << Self::SUB_BITS) - 1)) as u64;
        (1u64 << exponent) + (sub << (exponent - Self::SUB_BITS))
    }

    fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.sum_us += us as f64;
        self.max_us = self.max_us.max(us);
    }

    /// The value at quantile `q` (0..1), in ms.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::lower_bound(index) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    fn mean_ms(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us / self.total as f64 / 1000.0
        }
    }
}

// ---------------------------------------------------------------------------------------------
// run

/// Messages per `sendmmsg` / `recvmmsg`, and the room for each.
const BATCH: usize = 64;
const MSG_SIZE: usize = 1536;

/// One socket's queries in flight: `sent[id]` is the send (or due) time in ns since start,
/// plus one (0 = free); `order` holds (id, time) in send order, for timeouts.
struct Flight {
    socket: UdpSocket,
    sent: Vec<u64>,
    order: VecDeque<(u16, u64)>,
    next_id: u16,
    in_flight: usize,
    /// Closed loop: queries to send on this socket (one per answer or timeout).
    want: u64,
    /// Open loop: due times of the queries to send on this socket.
    due: VecDeque<u64>,
}

/// Buffers for `sendmmsg` / `recvmmsg` (one syscall for up to BATCH datagrams).
struct Batch {
    bufs: Vec<u8>,
    lens: Vec<usize>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Self {
        Self {
            bufs: vec![0; BATCH * MSG_SIZE],
            lens: vec![0; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
        }
    }

    fn message(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * MSG_SIZE..(i + 1) * MSG_SIZE]
    }

    /// Points one header at each of the first `n` buffers (lengths from `lens`, or all of it).
    fn prepare(&mut self, n: usize, full: bool) {
        self.iovecs.clear();
        self.headers.clear();
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            self.iovecs.push(libc::iovec {
                iov_base: unsafe { base.add(i * MSG_SIZE) } as *mut libc::c_void,
                iov_len: if full { MSG_SIZE } else { self.lens[i] },
            });
        }
        let iovecs = self.iovecs.as_mut_ptr();
        for i in 0..n {
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = unsafe { iovecs.add(i) };
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
    }

    /// Sends the first `n` messages on a connected socket; returns how many went out.
    fn send(&mut self, fd: libc::c_int, n: usize) -> io::Result<usize> {
        self.prepare(n, false);
        let sent = unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    /// Receives up to BATCH datagrams without waiting; their lengths are in `lens`.
    fn recv(&mut self, fd: libc::c_int) -> io::Result<usize> {
        self.prepare(BATCH, true);
        let received = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..received as usize {
            self.lens[i] = self.headers[i].msg_len as usize;
        }
        Ok(received as usize)
    }
}

#[derive(Default)]
struct Counts {
    sent: u64,
    answered: u64,
    answered_in_window: u64,
    timeouts: u64,
    late: u64,
    send_errors: u64,
    recv_errors: u64,
    rcodes: [u64; 16],
    with_answer: u64,
    truncated: u64,
}

fn new_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    let size: libc::c_int = 4 << 20;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // Best effort: the kernel caps it at net.core.[rw]mem_max.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(socket)
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Waits until a socket is readable or `timeout` passes; marks the readable ones.
fn wait_readable(fds: &mut [libc::pollfd], timeout: Duration) -> usize {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    for fd in fds.iter_mut() {
        fd.revents = 0;
    }
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    n.max(0) as usize
}

/// Sends what socket `flight` has to send (`want` or `due`), BATCH at a time. Returns false if
/// the socket refused (the rest waits for the next round).
fn send_pending(
    flight: &mut Flight,
    batch: &mut Batch,
    queries: &mut Queries,
    counts: &mut Counts,
    max_queries: u64,
    open_loop: bool,
    start: Instant,
) -> bool {
    let mut ids = [0u16; BATCH];
    loop {
        let pending = if open_loop {
            flight.due.len() as u64
        } else {
            flight.want
        };
        let n = pending.min(BATCH as u64).min(max_queries - counts.sent) as usize;
        if n == 0 {
            return true;
        }
        for (i, slot) in ids.iter_mut().enumerate().take(n) {
            // Next free ID on this socket (all busy only if the server stopped answering).
            let mut id = flight.next_id;
            let mut tries = 0;
            while flight.sent[id as usize] != 0 && tries < 65536 {
                id = id.wrapping_add(1);
                tries += 1;
            }
            flight.next_id = id.wrapping_add(1);
            *slot = id;
            let wire = queries.next_query();
            wire[..2].copy_from_slice(&id.to_be_bytes());
            let len = wire.len().min(MSG_SIZE);
            batch.message(i)[..len].copy_from_slice(&wire[..len]);
            batch.lens[i] = len;
        }
        let now = start.elapsed().as_nanos() as u64;
        let sent = match batch.send(flight.socket.as_raw_fd(), n) {
            Ok(sent) => sent,
            Err(error) if error.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => {
                counts.send_errors += 1;
                if open_loop {
                    flight.due.pop_front(); // a due query that could not go out is skipped
                }
                return false;
            }
        };
        for &id in ids.iter().take(sent) {
            let stamp = if open_loop {
                flight.due.pop_front().unwrap_or(now)
            } else {
                now
            } + 1;
            flight.sent[id as usize] = stamp;
            flight.order.push_back((id, stamp));
            flight.in_flight += 1;
        }
        counts.sent += sent as u64;
        if !open_loop {
            flight.want -= sent as u64;
        }
        if sent < n {
            return false;
        }
    }
}

fn run(args: &RunArgs) -> Result<u8, String> {
    let mut queries = Queries::load(&args.file, args.edns)?;
    let mut flights: Vec<Flight> = (0..args.sockets)
        .map(|_| {
            new_socket(args.server).map(|socket| Flight {
                socket,
                sent: vec![0; 65536],
                order: VecDeque::new(),
                next_id: fastrand_seed(),
                in_flight: 0,
                want: 0,
                due: VecDeque::new(),
            })
        })
        .collect::<io::Result<_>>()
        .map_err(|e| format!("socket to {}: {e}", args.server))?;
    let mut fds: Vec<libc::pollfd> = flights
        .iter()
        .map(|f| libc::pollfd {
            fd: f.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Sleep as precisely as asked (fixed-rate mode sleeps for tens of µs).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };

    let open_loop = args.rate.is_some();
    let timeout_ns = args.timeout.as_nanos() as u64;
    let window_ns = args.duration.as_nanos() as u64;
    let max_queries = args.max_queries.unwrap_or(u64::MAX);
    let mut counts = Counts::default();
    let mut histogram = Histogram::new();
    let mut batch = Batch::new();
    let nsockets = flights.len();
    let interval_ns = args.rate.map(|rate| 1e9 / rate);
    let mut scheduled: u64 = 0; // open loop: queries scheduled so far
    if !open_loop {
        for i in 0..args.outstanding {
            flights[i % nsockets].want += 1;
        }
    }
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let since = |start: Instant| start.elapsed().as_nanos() as u64;

    loop {
        let now = since(start);
        let sending = now < window_ns && counts.sent < max_queries;

        // 1. Send: the open loop schedules what is due by now, round robin over the sockets;
        //    the closed loop sends one query per answer or timeout on the socket that had it.
        let mut stalled = false;
        if sending {
            if let Some(interval) = interval_ns {
                let due = ((now as f64 / interval) as u64 + 1).min(max_queries);
                while scheduled < due {
                    let stamp = (scheduled as f64 * interval) as u64;
                    flights[(scheduled % nsockets as u64) as usize]
                        .due
                        .push_back(stamp);
                    scheduled += 1;
                }
            }
            for flight in flights.iter_mut() {
                if !send_pending(
                    flight,
                    &mut batch,
                    &mut queries,
                    &mut counts,
                    max_queries,
                    open_loop,
                    start,
                ) {
                    stalled = true;
                }
            }
        }

        // 2. Expire timed-out queries (the oldest are at the front of each socket's queue).
        let now = since(start);
        let mut total_in_flight = 0;
        for flight in flights.iter_mut() {
            while let Some(&(id, stamp)) = flight.order.front() {
                if flight.sent[id as usize] != stamp {
                    flight.order.pop_front(); // answered already
                } else if now + 1 >= stamp + timeout_ns {
                    flight.order.pop_front();
                    flight.sent[id as usize] = 0;
                    flight.in_flight -= 1;
                    counts.timeouts += 1;
                    if !open_loop {
                        flight.want += 1;
                    }
                } else {
                    break;
                }
            }
            total_in_flight += flight.in_flight;
        }

        // 3. Done? (Stopped sending and nothing left in flight.)
        let sending = now < window_ns && counts.sent < max_queries;
        if !sending && total_in_flight == 0 {
            break;
        }

        // 4. Wait for answers, or until the next query is due / the window ends.
        let mut wait = Duration::from_millis(1);
        if sending {
            if let Some(interval) = interval_ns {
                let next_due = (scheduled as f64 * interval) as u64;
                wait = Duration::from_nanos(next_due.saturating_sub(now)).min(wait);
            }
            if stalled || flights.iter().any(|f| f.want > 0) {
                // A send failed, or a timeout made room: try again soon, without spinning.
                wait = wait.min(Duration::from_micros(100));
            }
            wait = wait.min(Duration::from_nanos(window_ns.saturating_sub(now)));
        }
        if wait_readable(&mut fds, wait) == 0 {
            continue;
        }

        // 5. Read every answer waiting on the readable sockets.
        for (index, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let flight = &mut flights[index];
            let mut errors = 0;
            loop {
                let received = match batch.recv(fd.fd) {
                    Ok(received) => received,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        counts.recv_errors += 1; // e.g. ICMP port unreachable
                        errors += 1;
                        if errors > 16 {
                            break;
                        }
                        continue;
                    }
                };
                let now = since(start);
                for i in 0..received {
                    let len = batch.lens[i];
                    let packet = &batch.bufs[i * MSG_SIZE..i * MSG_SIZE + len.min(MSG_SIZE)];
                    if len < 12 || packet[2] & 0x80 == 0 {
                        counts.late += 1;
                        continue;
                    }
                    let id = u16::from_be_bytes([packet[0], packet[1]]) as usize;
                    let stamp = flight.sent[id];
                    if stamp == 0 {
                        counts.late += 1; // answered after its timeout, or a stray
                        continue;
                    }
                    flight.sent[id] = 0;
                    flight.in_flight -= 1;
                    if !open_loop {
                        flight.want += 1;
                    }
                    counts.answered += 1;
                    if now <= window_ns {
                        counts.answered_in_window += 1;
                    }
                    histogram.record(now.saturating_sub(stamp - 1) / 1000);
                    counts.rcodes[(packet[3] & 0x0f) as usize] += 1;
                    if u16::from_be_bytes([packet[6], packet[7]]) > 0 {
                        counts.with_answer += 1;
                    }
                    if packet[2] & 0x02 != 0 {
                        counts.truncated += 1;
                    }
                }
                if received < BATCH {
                    break;
                }
            }
        }
    }

    let wall = start.elapsed().as_secs_f64();
    let finished_count = args.max_queries.is_some() && counts.sent >= max_queries;
    let window = if finished_count {
        wall
    } else {
        args.duration.as_secs_f64().min(wall)
    };
    let cpu = cpu_seconds() - cpu_start;
    let rc = &counts.rcodes;
    let other: u64 = rc
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 2, 3, 5].contains(i))
        .map(|(_, c)| c)
        .sum();
    let qps = if finished_count {
        counts.answered as f64 / window
    } else {
        counts.answered_in_window as f64 / window
    };
    println!(
        "mode={} server={} file={} sockets={} outstanding={} rate={} duration={:.2} \
         sent={} answered={} qps={:.0} send_rate={:.0} timeouts={} late={} send_errors={} recv_errors={} \
         noerror={} nxdomain={} servfail={} refused={} other_rcode={} with_answer={} truncated={} \
         lat_avg_ms={:.3} lat_p50_ms={:.3} lat_p90_ms={:.3} lat_p99_ms={:.3} lat_p999_ms={:.3} lat_max_ms={:.3} \
         gen_cpu={:.2}",
        if open_loop { "rate" } else { "max" },
        args.server,
        args.file,
        args.sockets,
        if open_loop {
            "-".to_owned()
        } else {
            args.outstanding.to_string()
        },
        args.rate
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "max".into()),
        window,
        counts.sent,
        counts.answered,
        qps,
        counts.sent as f64 / window,
        counts.timeouts,
        counts.late,
        counts.send_errors,
        counts.recv_errors,
        rc[0],
        rc[3],
        rc[2],
        rc[5],
        other,
        counts.with_answer,
        counts.truncated,
        histogram.mean_ms(),
        histogram.quantile_ms(0.50),
        histogram.quantile_ms(0.90),
        histogram.quantile_ms(0.99),
        histogram.quantile_ms(0.999),
        histogram.max_us as f64 / 1000.0,
        cpu / wall,
    );
    Ok(0)
}

/// A starting ID per socket, so restarted runs do not reuse the previous run's IDs first.
fn fastrand_seed() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

// ---------------------------------------------------------------------------------------------
// wait

fn wait(args: &WaitArgs) -> Result<u8, String> {
    let local = if args.server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(args.interval))
        .map_err(|e| format!("socket: {e}"))?;
    let mut query = Vec::new();
    build_query(&mut query, &args.name, args.qtype, false)?;
    let start = Instant::now();
    let mut buf = [0u8; 65536];
    let mut id: u16 = fastrand_seed();
    let mut attempts = 0u64;
    let mut last = String::from("no response");
    while start.elapsed() < args.timeout {
        if let Some(pid) = args.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            eprintln!("loadgen wait: process {pid} exited ({last})");
            return Ok(2);
        }
        id = id.wrapping_add(1);
        query[..2].copy_from_slice(&id.to_be_bytes());
        attempts += 1;
        let asked = Instant::now();
        let _ = socket.send_to(&query, args.server);
        // Read until this query's answer or the interval is over.
        while asked.elapsed() < args.interval {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            let packet = &buf[..len];
            if from != args.server || len < 12 || packet[..2] != id.to_be_bytes() {
                continue;
            }
            let rcode = packet[3] & 0x0f;
            let answers = u16::from_be_bytes([packet[6], packet[7]]);
            let ok = match args.expect {
                Expect::Any => true,
                Expect::Answer => rcode == 0 && answers > 0,
                Expect::Blocked => is_blocked_answer(packet),
            };
            if ok {
                println!(
                    "ready_after_s={:.3} attempts={attempts} rcode={rcode} answers={answers}",
                    start.elapsed().as_secs_f64()
                );
                return Ok(0);
            }
            last = format!("last answer: rcode {rcode}, {answers} answers");
            break;
        }
        let spent = asked.elapsed();
        if spent < args.interval {
            std::thread::sleep(args.interval - spent);
        }
    }
    eprintln!(
        "loadgen wait: {} not answered as expected within {:?} ({last})",
        args.name, args.timeout
    );
    Ok(1)
}
