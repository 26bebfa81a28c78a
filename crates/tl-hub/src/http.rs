//! https downloads, verified by sha256 before they are published.

use std::path::Path;

use tl_core::progress::{MeteredRead, Progress, Unit};

use crate::{Error, Result, fetch::write_verified};

/// Downloads `url` to `dest` atomically; the file appears only if its sha256 is `sha256`.
pub fn download(url: &str, dest: &Path, sha256: &str, progress: &dyn Progress) -> Result<()> {
    let fail = |reason: String| Error::Download {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(20)))
        .timeout_recv_body(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => fail(format!("the server answered HTTP {code}")),
        ureq::Error::Io(io) => fail(format!("{io} (no network?)")),
        other => fail(other.to_string()),
    })?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meter = progress.start(&name, Unit::Bytes, total);
    let body = response.into_body().into_reader();
    let mut reader = MeteredRead::new(body, &*meter);
    let result = write_verified(&mut reader, dest, sha256, url);
    meter.finish();
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        thread,
    };

    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    };

    use tl_core::progress::{Meter, Silent};

    use super::*;

    /// Counts the bytes a download reports.
    #[derive(Default)]
    struct Bytes {
        total: Mutex<Option<u64>>,
        seen: Arc<AtomicU64>,
    }

    struct Counter(Arc<AtomicU64>);

    impl Meter for Counter {
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    impl Progress for Bytes {
        fn start(&self, _: &str, unit: Unit, total: Option<u64>) -> Box<dyn Meter> {
            assert_eq!(unit, Unit::Bytes);
            *self.total.lock().unwrap() = total;
            Box::new(Counter(self.seen.clone()))
        }
    }

    /// A one-route HTTP/1.1 server on 127.0.0.1 that serves `body` at `/file` and 404 elsewhere,
    /// for `requests` connections, then stops.
    pub(crate) fn serve(body: Vec<u8>, requests: usize) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                if first.starts_with("GET /file ") {
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    stream.write_all(&body).unwrap();
                } else {
                    stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                }
            }
        });
        (format!("http://{addr}"), handle)
    }

    #[test]
    fn downloads_verify_and_refuse_bad_bytes() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let good = tl_core::hash::sha256_bytes(&body);
        let (base, server) = serve(body.clone(), 3);
        let dir = tempfile::tempdir().unwrap();

        let dest = dir.path().join("ok.bin");
        let progress = Bytes::default();
        download(&format!("{base}/file"), &dest, &good, &progress).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        // The caller's meter saw the declared size and every byte.
        assert_eq!(*progress.total.lock().unwrap(), Some(body.len() as u64));
        assert_eq!(progress.seen.load(Ordering::Relaxed), body.len() as u64);

        let bad_dest = dir.path().join("bad.bin");
        let wrong = "0".repeat(64);
        let err = download(&format!("{base}/file"), &bad_dest, &wrong, &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sha256 mismatch") && err.contains(&good),
            "{err}"
        );
        assert!(
            !bad_dest.exists(),
            "a file with the wrong hash must not be published"
        );

        let err = download(
            &format!("{base}/missing"),
            &dir.path().join("m"),
            &good,
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("404"), "{err}");
        server.join().unwrap();
        // Only the good file remains: no temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let err = download(
            &format!("http://127.0.0.1:{port}/x"),
            &dir.path().join("x"),
            &"0".repeat(64),
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot download"), "{err}");
    }
}
