//! noop-responder: the "server that does no work at all" of `scripts/bench`.
//!
//! One thread, one blocking UDP socket, batched the way a fast server is: one `recvmmsg`
//! takes up to [`BATCH`] queries (waiting for the first only), each is answered in place, and
//! one `sendmmsg` sends them all back. An answer flips QR (and sets RA), keeps the ID, the
//! flags and the question, drops everything after the question (EDNS included) and, for an
//! A or AAAA question, appends one record of the unspecified address (0.0.0.0 or ::, TTL 10,
//! the name as a pointer to the question): the same bytes a blocked answer carries. Other
//! types get NOERROR with no answer.
//!
//! It is the ceiling a one-core batched UDP server can reach on this machine: no parsing
//! beyond the question's end, no lookup, no allocation. A server that answers from a list or
//! a cache does the same system calls plus its own work, so its figure divided by this one is
//! the share of the ceiling it reaches (issue 13: blocked and cached ≥ 90 %).
//!
//! Usage: `noop-responder --listen 127.0.0.1:5304`. Runs until killed.

use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

/// Datagrams per `recvmmsg` / `sendmmsg` (as metasink's UDP loop).
const BATCH: usize = 64;
/// Room for one datagram: a query up to 512 bytes plus the 28-byte answer record.
const MSG_SIZE: usize = 1536;

fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:5304");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(value) => listen = value,
                None => return usage("--listen needs a value"),
            },
            "-h" | "--help" => {
                println!("usage: noop-responder [--listen IP:PORT]   (default 127.0.0.1:5304)");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let socket = match UdpSocket::bind(&listen) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("noop-responder: binding {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("noop-responder: answering on {listen} ({BATCH} datagrams per system call)");
    serve(socket.as_raw_fd())
}

/// Receives, answers in place and sends back, batch after batch, until the socket fails.
fn serve(fd: libc::c_int) -> ExitCode {
    let mut bufs = vec![0u8; BATCH * MSG_SIZE];
    // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero bytes
    // are valid values.
    let mut peers: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut received: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut replies: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    loop {
        for i in 0..BATCH {
            iovecs[i] = libc::iovec {
                // SAFETY: i * MSG_SIZE is inside `bufs` (BATCH * MSG_SIZE long).
                iov_base: unsafe { bufs.as_mut_ptr().add(i * MSG_SIZE) }.cast(),
                iov_len: MSG_SIZE,
            };
            received[i].msg_hdr.msg_iov = &mut iovecs[i];
            received[i].msg_hdr.msg_iovlen = 1;
            received[i].msg_hdr.msg_name = (&raw mut peers[i]).cast();
            received[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
        }
        // SAFETY: every header points at live buffers of the stated sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                received.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("noop-responder: recvmmsg: {error}");
            return ExitCode::FAILURE;
        }
        let mut count = 0;
        for i in 0..n as usize {
            let message = &mut bufs[i * MSG_SIZE..(i + 1) * MSG_SIZE];
            let Some(len) = answer_in_place(message, received[i].msg_len as usize) else {
                continue;
            };
            iovecs[i].iov_len = len;
            replies[count] = received[i];
            replies[count].msg_hdr.msg_iov = &mut iovecs[i];
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the headers point at the answers' buffers and their peers' addresses.
            let done =
                unsafe { libc::sendmmsg(fd, replies[sent..].as_mut_ptr(), (count - sent) as _, 0) };
            if done <= 0 {
                break; // a reply the kernel refuses is dropped, as a server would
            }
            sent += done as usize;
        }
    }
}

/// Turns the query in `message[..len]` into its answer; returns the answer's length, or None
/// for a datagram that is not a query with a question.
fn answer_in_place(message: &mut [u8], len: usize) -> Option<usize> {
    let end = question_end(&message[..len])?;
    let qtype = u16::from_be_bytes([message[end - 4], message[end - 3]]);
    message[2] = (message[2] | 0x80) & !0x02; // QR = 1, TC = 0; opcode and RD kept
    message[3] = 0x80; // RA = 1, rcode NOERROR
    let data: &[u8] = match qtype {
        1 => &[0; 4],
        28 => &[0; 16],
        _ => &[],
    };
    let answers = u8::from(!data.is_empty());
    message[4..12].copy_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]); // QD = 1, AN, NS = AR = 0
    if data.is_empty() {
        return Some(end);
    }
    let mut type_and_class = [0u8; 4];
    type_and_class.copy_from_slice(&message[end - 4..end]);
    let mut at = end;
    for part in [
        &[0xc0, 12][..], // the name: a pointer to the question's
        &type_and_class, // the type and class asked
        &10u32.to_be_bytes(),
        &(data.len() as u16).to_be_bytes(),
        data,
    ] {
        message[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Some(at)
}

/// Offset just past the first question (name, type, class), if the packet has one.
fn question_end(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 || u16::from_be_bytes([packet[4], packet[5]]) == 0
    {
        return None;
    }
    let mut pos = 12;
    loop {
        let len = *packet.get(pos)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return None; // compression or a bad label: not in a question we answer
        }
        pos += 1 + len;
    }
    let end = pos + 4;
    (end <= packet.len() && end + 28 <= MSG_SIZE).then_some(end)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("noop-responder: {message}\nusage: noop-responder [--listen IP:PORT]");
    ExitCode::from(2)
}
