//! Real receivers on loopback for the delivery tests: an RFC 5424 syslog server (UDP, TCP with
//! octet counting, a unix socket) with a strict parser, and an HTTP server that answers by a
//! script (fail, slow, ok) and records what it accepted.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, UdpSocket},
    os::unix::net::UnixDatagram,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;

// ------------------------------------------------------------------------------------------
// Syslog

/// One RFC 5424 message, parsed strictly.
#[derive(Debug)]
pub(crate) struct Syslog5424 {
    pub pri: u8,
    pub host: String,
    pub app: String,
    pub msgid: String,
    pub sd: BTreeMap<String, BTreeMap<String, String>>,
    pub msg: String,
}

fn field<'a>(s: &mut &'a str, name: &str, max: usize) -> &'a str {
    let (f, rest) = s
        .split_once(' ')
        .unwrap_or_else(|| panic!("{name}: no space after it"));
    assert!(
        !f.is_empty() && f.len() <= max && f.bytes().all(|b| (33..=126).contains(&b)),
        "{name} `{f}` is not 1..{max} PRINTUSASCII"
    );
    *s = rest;
    f
}

pub(crate) fn parse_5424(text: &str) -> Syslog5424 {
    let rest = text.strip_prefix('<').expect("PRI starts with <");
    let (pri, rest) = rest.split_once('>').expect("PRI ends with >");
    assert!(
        (1..=3).contains(&pri.len()) && pri.bytes().all(|b| b.is_ascii_digit()),
        "PRI {pri}"
    );
    let pri: u8 = pri.parse().expect("PRI");
    assert!(pri <= 191);
    let mut s = rest.strip_prefix("1 ").expect("VERSION 1");
    let ts = field(&mut s, "TIMESTAMP", 32);
    if ts != "-" {
        // FULL-DATE "T" FULL-TIME with at most 6 fraction digits and Z or an offset.
        let b = ts.as_bytes();
        assert!(
            b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T',
            "{ts}"
        );
        assert!(b[13] == b':' && b[16] == b':', "{ts}");
        let tail = &ts[19..];
        let (frac, zone) = match tail.strip_prefix('.') {
            Some(t) => {
                let n = t.bytes().take_while(u8::is_ascii_digit).count();
                assert!((1..=6).contains(&n), "TIME-SECFRAC of {ts}");
                (n, &t[n..])
            }
            None => (0, tail),
        };
        let _ = frac;
        assert!(
            zone == "Z" || (zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-'))),
            "TIME-OFFSET of {ts}"
        );
    }
    let host = field(&mut s, "HOSTNAME", 255).to_string();
    let app = field(&mut s, "APP-NAME", 48).to_string();
    let _procid = field(&mut s, "PROCID", 128);
    let msgid = field(&mut s, "MSGID", 32).to_string();
    let mut sd = BTreeMap::new();
    if let Some(r) = s.strip_prefix("- ") {
        s = r;
    } else {
        while let Some(r) = s.strip_prefix('[') {
            let (id, mut r) = r
                .split_once([' ', ']'])
                .map(|(a, _)| (a, &r[a.len()..]))
                .expect("SD-ID");
            assert!(!id.is_empty() && id.len() <= 32, "SD-ID {id}");
            let mut params = BTreeMap::new();
            loop {
                if let Some(rr) = r.strip_prefix(']') {
                    r = rr;
                    break;
                }
                let rr = r.strip_prefix(' ').expect("SP before SD-PARAM");
                let (name, rr) = rr.split_once("=\"").expect("PARAM-NAME=\"");
                assert!(!name.is_empty() && name.len() <= 32, "PARAM-NAME {name}");
                let mut value = String::new();
                let mut chars = rr.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let (_, c) = chars.next().expect("escaped char");
                            value.push(c);
                        }
                        Some((i, '"')) => break i,
                        Some((_, ']')) => panic!("unescaped ] in PARAM-VALUE"),
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated PARAM-VALUE"),
                    }
                };
                params.insert(name.to_string(), value);
                r = &rr[end + 1..];
            }
            sd.insert(id.to_string(), params);
            s = r;
        }
        s = s.strip_prefix(' ').expect("SP before MSG");
    }
    Syslog5424 {
        pri,
        host,
        app,
        msgid,
        sd,
        msg: s.to_string(),
    }
}

pub(crate) type Inbox = Arc<Mutex<Vec<String>>>;

pub(crate) fn udp_server() -> (u16, Inbox) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = sock.local_addr().expect("addr").port();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let inbox: Inbox = Default::default();
    let i2 = inbox.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                i2.lock()
                    .expect("inbox")
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    (port, inbox)
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, nothing else allowed between frames.
pub(crate) fn tcp_server() -> (u16, Inbox) {
    let l = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let port = l.local_addr().expect("addr").port();
    let inbox: Inbox = Default::default();
    let i2 = inbox.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let inbox = i2.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = Vec::new();
                    if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                        return;
                    }
                    len.pop();
                    let n: usize = std::str::from_utf8(&len)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("bad octet count {len:?}"));
                    let mut msg = vec![0u8; n];
                    r.read_exact(&mut msg).expect("frame body");
                    inbox
                        .lock()
                        .expect("inbox")
                        .push(String::from_utf8_lossy(&msg).into_owned());
                }
            });
        }
    });
    (port, inbox)
}

pub(crate) fn unix_server(path: &Path) -> Inbox {
    let sock = UnixDatagram::bind(path).expect("unix dgram");
    let inbox: Inbox = Default::default();
    let i2 = inbox.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            i2.lock()
                .expect("inbox")
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    inbox
}

// HTTP receivers

#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Fail(u16),
    Slow(u64),
    Ok,
}

/// An HTTP/1.1 server (keep-alive) answering requests by a script, then 200 for the rest.
/// Records the bodies it accepted (answered 2xx), in order.
pub(crate) struct HttpReceiver {
    pub port: u16,
    pub accepted: Arc<Mutex<Vec<String>>>,
    pub requests: Arc<Mutex<Vec<Reply>>>,
    pub stop: Arc<AtomicBool>,
}

impl HttpReceiver {
    pub(crate) fn start(script: Vec<Reply>) -> HttpReceiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("http");
        let port = l.local_addr().expect("addr").port();
        let accepted: Arc<Mutex<Vec<String>>> = Default::default();
        let requests: Arc<Mutex<Vec<Reply>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (a2, r2, s2) = (accepted.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (accepted, requests, script) = (a2.clone(), r2.clone(), script.clone());
                std::thread::spawn(move || {
                    let mut w = conn.try_clone().expect("clone");
                    let mut r = BufReader::new(conn);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        assert!(line.starts_with("POST "), "{line}");
                        let mut len = 0usize;
                        let mut ctype = String::new();
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).expect("header");
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').expect("header line");
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => len = v.trim().parse().expect("length"),
                                "content-type" => ctype = v.trim().to_string(),
                                _ => {}
                            }
                        }
                        assert_eq!(ctype, "application/x-ndjson");
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).expect("body");
                        let reply = script.lock().expect("script").next().unwrap_or(Reply::Ok);
                        requests.lock().expect("requests").push(reply);
                        let status = match reply {
                            Reply::Fail(code) => code,
                            Reply::Slow(ms) => {
                                std::thread::sleep(Duration::from_millis(ms));
                                200
                            }
                            Reply::Ok => 200,
                        };
                        if status == 200 {
                            accepted
                                .lock()
                                .expect("accepted")
                                .push(String::from_utf8_lossy(&body).into_owned());
                        }
                        let _ = write!(
                            w,
                            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
                        );
                    }
                });
            }
        });
        HttpReceiver {
            port,
            accepted,
            requests,
            stop,
        }
    }

    pub(crate) fn alerts(&self) -> Vec<Value> {
        self.accepted
            .lock()
            .expect("accepted")
            .iter()
            .flat_map(|b| {
                b.lines()
                    .map(|l| serde_json::from_str(l).expect("JSON line"))
                    .collect::<Vec<Value>>()
            })
            .collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
