//! noop-responder: the "server that does no work at all" of `scripts/bench`.
//!
//! One thread, one blocking UDP socket: receive a query, flip QR (and set RA), keep the ID, the
//! flags and the question, drop everything after the question (EDNS included), set every other
//! count to zero, send it back. It is the ceiling a one-core UDP server can reach on this
//! machine with the usual one `recvfrom` + one `sendto` per query: no parsing beyond the
//! question's end, no lookup, no allocation.
//!
//! Usage: `noop-responder --listen 127.0.0.1:5304`. Runs until killed.

use std::net::UdpSocket;
use std::process::ExitCode;

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
    eprintln!("noop-responder: answering on {listen}");
    let mut buf = [0u8; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(_) => continue,
        };
        let Some(end) = question_end(&buf[..len]) else {
            continue;
        };
        buf[2] = (buf[2] | 0x80) & !0x02; // QR = 1, TC = 0; opcode and RD kept
        buf[3] = 0x80; // RA = 1, rcode NOERROR
        buf[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD = 1, AN = NS = AR = 0
        let _ = socket.send_to(&buf[..end], peer);
    }
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
    (end <= packet.len()).then_some(end)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("noop-responder: {message}\nusage: noop-responder [--listen IP:PORT]");
    ExitCode::from(2)
}
