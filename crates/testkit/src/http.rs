//! A small HTTP/1.1 server on 127.0.0.1 for tests that need a real one
//! (CRL distribution points, registry services) in a process whose code
//! under test is a child process or blocking: GET requests, one thread,
//! `connection: close`, for the rest of the test process.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

/// One request as the handler sees it.
#[derive(Debug)]
pub struct Request {
    /// The request target's path (query string included).
    pub path: String,
    /// Header names in lower case, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A status, content type and body.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    /// An empty answer with `status`.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
}

/// Serves `handler` on 127.0.0.1 (a free port) for the rest of the process.
pub fn serve(handler: impl Fn(&Request) -> Response + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut reader = BufReader::new(&stream);
            let Some(request) = read_request(&mut reader) else {
                continue;
            };
            let response = handler(&request);
            let head = format!(
                "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                response.status,
                response.content_type,
                response.body.len()
            );
            let mut stream = &stream;
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&response.body);
        }
    });
    address
}

/// Serves `crl` (DER) to every request; returns its URL.
pub fn serve_crl(crl: Vec<u8>) -> String {
    let address = serve(move |_| Response::ok("application/pkix-crl", crl.clone()));
    format!("http://{address}/ca.crl")
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request { path, headers })
}
