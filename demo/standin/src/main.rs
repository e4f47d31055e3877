//! Stand-in for every service of the envctl demo environment (oracle-xe, activemq, accounting,
//! proxy) and for the scenarios of envctl's tests.
//!
//! It is std-only so that it links statically and runs in a `FROM scratch` image: the demo must
//! start without any registry access. See `USAGE` for the command line.

use std::fmt::Display;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, fs, thread};

const USAGE: &str = "\
usage:
  standin serve [--name NAME] [--port PORT] [--delay DUR] [--requires HOST:PORT]...
                [--forward HOST:PORT] [--ready-file PATH]
  standin probe tcp PORT
  standin probe http PORT PATH
  standin probe file PATH
  standin exit CODE [--name NAME] [--delay DUR] [--message TEXT]...
  standin sleep [--name NAME]
  standin fetch VARIABLE PATH      GET PATH from the HOST:PORT in environment VARIABLE, print it

`serve` answers GET /health, GET / (the chain behind it), and a WebSocket at /ws that echoes
text messages.

DUR is a number with an optional unit: 500ms, 3s, 2m, 0 (a bare number means seconds).
With STANDIN_IGNORE_SIGTERM=1 in its environment, SIGTERM is logged and ignored, as by a
shell running as PID 1: only SIGKILL ends it.";

/// How long `serve` keeps retrying a required dependency before giving up.
const DEPENDENCY_PATIENCE: Duration = Duration::from_secs(5);
/// Timeout of a single connection attempt, probe or upstream request.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    signals::exit_on_termination(env::var_os("STANDIN_IGNORE_SIGTERM").is_some_and(|v| v == "1"));
    let args: Vec<String> = env::args().skip(1).collect();
    if matches!(
        args.first().map(String::as_str),
        Some("-h" | "--help" | "help")
    ) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match Command::parse(args) {
        Ok(command) => command.run(),
        Err(err) => {
            eprintln!("standin: {err}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

enum Command {
    Serve(Serve),
    Probe(Probe),
    Exit {
        name: String,
        code: u8,
        delay: Delay,
        messages: Vec<String>,
    },
    Sleep {
        name: String,
    },
    Fetch {
        variable: String,
        path: String,
    },
}

struct Serve {
    name: String,
    port: u16,
    delay: Delay,
    requires: Vec<String>,
    forward: Option<String>,
    ready_file: Option<PathBuf>,
}

enum Probe {
    Tcp(u16),
    Http(u16, String),
    File(PathBuf),
}

/// A duration as given on the command line, kept verbatim for the log lines.
struct Delay {
    text: String,
    duration: Duration,
}

impl Command {
    fn parse(args: Vec<String>) -> Result<Self, String> {
        let mut args = Args {
            rest: args.into_iter(),
            inline: None,
        };
        let subcommand = args.positional("a subcommand")?;
        let command = match subcommand.as_str() {
            "serve" => {
                let mut serve = Serve {
                    name: "standin".into(),
                    port: 8080,
                    delay: Delay::ZERO,
                    requires: Vec::new(),
                    forward: None,
                    ready_file: None,
                };
                while let Some(flag) = args.flag()? {
                    match flag.as_str() {
                        "--name" => serve.name = args.value(&flag)?,
                        "--port" => serve.port = parse(&args.value(&flag)?, "port")?,
                        "--delay" => serve.delay = Delay::parse(&args.value(&flag)?)?,
                        "--requires" => serve.requires.push(host_port(args.value(&flag)?)?),
                        "--forward" => serve.forward = Some(host_port(args.value(&flag)?)?),
                        "--ready-file" => serve.ready_file = Some(args.value(&flag)?.into()),
                        _ => return Err(format!("unknown option {flag} for serve")),
                    }
                }
                Command::Serve(serve)
            }
            "probe" => {
                let probe = match args.positional("a probe kind (tcp, http, file)")?.as_str() {
                    "tcp" => Probe::Tcp(parse(&args.positional("PORT")?, "port")?),
                    "http" => Probe::Http(
                        parse(&args.positional("PORT")?, "port")?,
                        args.positional("PATH")?,
                    ),
                    "file" => Probe::File(args.positional("PATH")?.into()),
                    other => return Err(format!("unknown probe kind {other:?}")),
                };
                args.finish()?;
                Command::Probe(probe)
            }
            "exit" => {
                let code = parse(&args.positional("CODE")?, "exit code")?;
                let (mut name, mut delay, mut messages) = ("standin".into(), Delay::ZERO, vec![]);
                while let Some(flag) = args.flag()? {
                    match flag.as_str() {
                        "--name" => name = args.value(&flag)?,
                        "--delay" => delay = Delay::parse(&args.value(&flag)?)?,
                        "--message" => messages.push(args.value(&flag)?),
                        _ => return Err(format!("unknown option {flag} for exit")),
                    }
                }
                Command::Exit {
                    name,
                    code,
                    delay,
                    messages,
                }
            }
            "sleep" => {
                let mut name = "standin".into();
                while let Some(flag) = args.flag()? {
                    match flag.as_str() {
                        "--name" => name = args.value(&flag)?,
                        _ => return Err(format!("unknown option {flag} for sleep")),
                    }
                }
                Command::Sleep { name }
            }
            "fetch" => Command::Fetch {
                variable: args.positional("a variable")?,
                path: args.positional("a path")?,
            },
            other => return Err(format!("unknown subcommand {other:?}")),
        };
        Ok(command)
    }

    fn run(self) -> ExitCode {
        match self {
            Command::Serve(serve) => serve.run(),
            Command::Probe(probe) => probe.run(),
            Command::Fetch { variable, path } => fetch(&variable, &path),
            Command::Exit {
                name,
                code,
                delay,
                messages,
            } => {
                println!("{name}: starting");
                println!("{name}: migrating schema...");
                thread::sleep(delay.duration);
                for line in messages.iter().flat_map(|message| message.lines()) {
                    println!("{name}: {line}");
                }
                println!("{name}: exiting with code {code}");
                ExitCode::from(code)
            }
            Command::Sleep { name } => {
                println!("{name}: sleeping");
                // Never ready, never done: only a signal ends this.
                loop {
                    thread::park();
                }
            }
        }
    }
}

/// The remaining command-line arguments.
struct Args {
    rest: std::vec::IntoIter<String>,
    /// The value of the last flag when given as `--flag=VALUE`.
    inline: Option<String>,
}

impl Args {
    fn positional(&mut self, what: &str) -> Result<String, String> {
        match self.rest.next() {
            Some(arg) if !arg.starts_with("--") => Ok(arg),
            Some(arg) => Err(format!("expected {what}, found {arg}")),
            None => Err(format!("missing {what}")),
        }
    }

    /// The next `--flag`; its value follows with [`Args::value`].
    fn flag(&mut self) -> Result<Option<String>, String> {
        let Some(arg) = self.rest.next() else {
            return Ok(None);
        };
        if !arg.starts_with("--") {
            return Err(format!("unexpected argument {arg:?}"));
        }
        Ok(Some(match arg.split_once('=') {
            Some((flag, value)) => {
                self.inline = Some(value.to_owned());
                flag.to_owned()
            }
            None => arg,
        }))
    }

    /// The value of `flag`, given as `--flag VALUE` or `--flag=VALUE`.
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.rest.next())
            .ok_or_else(|| format!("missing value for {flag}"))
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.rest.next() {
            Some(arg) => Err(format!("unexpected argument {arg:?}")),
            None => Ok(()),
        }
    }
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("invalid {what} {text:?}"))
}

fn host_port(text: String) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(text),
        _ => Err(format!("expected HOST:PORT, found {text:?}")),
    }
}

impl Delay {
    const ZERO: Delay = Delay {
        text: String::new(),
        duration: Duration::ZERO,
    };

    fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            _ => {
                return Err(format!(
                    "invalid duration {text:?} (use e.g. 500ms, 3s, 2m)"
                ));
            }
        };
        let number: f64 = parse(number, "duration")?;
        let duration = Duration::try_from_secs_f64(number * seconds_per_unit)
            .map_err(|_| format!("invalid duration {text:?}"))?;
        Ok(Delay {
            text: text.to_owned(),
            duration,
        })
    }
}

impl Serve {
    fn run(self) -> ExitCode {
        let name = &self.name;
        if self.delay.duration.is_zero() {
            println!("{name}: starting");
        } else {
            println!("{name}: starting (ready in {})", self.delay.text);
            thread::sleep(self.delay.duration);
        }

        // A dependent must fail when its dependency is unreachable under its link name: that is
        // what the demo shows when envctl gets the aliases or the start order wrong.
        for dependency in &self.requires {
            match connect_patiently(name, dependency) {
                Ok(_) => println!("{name}: dependency {dependency} reachable"),
                Err(err) => {
                    return fail(format!(
                        "{name}: cannot reach dependency {dependency}: {err}"
                    ));
                }
            }
        }

        let address = SocketAddr::from(([0, 0, 0, 0], self.port));
        let listener = match TcpListener::bind(address) {
            Ok(listener) => listener,
            Err(err) => return fail(format!("{name}: cannot listen on {address}: {err}")),
        };
        println!("{name}: listening on {address}");
        if let Some(path) = &self.ready_file
            && let Err(err) = write_ready_file(path)
        {
            return fail(format!("{name}: cannot write {}: {err}", path.display()));
        }
        println!("{name}: ready on port {}", self.port);

        let serve = Arc::new(self);
        for stream in listener.incoming().flatten() {
            let serve = Arc::clone(&serve);
            thread::spawn(move || {
                // Errors only concern this one client (e.g. a TCP probe that hung up).
                let _ = serve.handle(stream);
            });
        }
        ExitCode::SUCCESS
    }

    fn handle(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?.take(16 * 1024));
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(()); // connected and closed without a request: a TCP probe
        }
        // Only a WebSocket key matters among the headers.
        let mut header = String::new();
        let mut websocket_key = None;
        while reader.read_line(&mut header)? > 0 && !header.trim().is_empty() {
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("sec-websocket-key")
            {
                websocket_key = Some(value.trim().to_string());
            }
            header.clear();
        }

        let parts: Vec<&str> = request_line.split_whitespace().collect();
        if let (["GET", "/ws", _], Some(key)) = (&parts[..], websocket_key) {
            println!("{}: websocket", self.name);
            return websocket::echo(stream, &key);
        }
        let health = matches!(parts[..], [_, "/health", _]);
        let (status, body) = match parts[..] {
            _ if health => (200, "ok\n".to_owned()),
            ["GET", path, _] => self.answer(path),
            [_, _, _] => (405, "only GET is supported\n".to_owned()),
            _ => (400, "bad request\n".to_owned()),
        };
        // Health checks come every second or so: logging them would drown the rest.
        if !health {
            println!("{}: {} -> {status}", self.name, request_line.trim_end());
        }
        respond(&stream, status, &body)
    }

    /// The body of `GET path`: this service's view of the chain of services behind it.
    fn answer(&self, path: &str) -> (u16, String) {
        let name = &self.name;
        if let Some(upstream) = &self.forward {
            return match http_get(upstream, path) {
                // The upstream's own answer shows how far down the chain is healthy.
                Ok((status, body)) => {
                    let status = if (200..300).contains(&status) {
                        200
                    } else {
                        502
                    };
                    (status, format!("{name} -> {body}"))
                }
                Err(err) => (502, format!("{name} -> {upstream} failed: {err}\n")),
            };
        }
        let mut status = 200;
        let mut body = format!("{name} ok\n");
        for dependency in &self.requires {
            match connect(dependency) {
                Ok(_) => body += &format!("{name} -> {dependency} ok\n"),
                Err(err) => {
                    status = 502;
                    body += &format!("{name} -> {dependency} failed: {err}\n");
                }
            }
        }
        (status, body)
    }
}

fn respond(mut stream: &TcpStream, status: u16, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        _ => "Bad Gateway",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn write_ready_file(path: &Path) -> io::Result<()> {
    // A `FROM scratch` container has not even /tmp: create the directories as well.
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, b"ready\n")
}

fn fail(message: impl Display) -> ExitCode {
    println!("{message}");
    ExitCode::FAILURE
}

/// Connects to `HOST:PORT`, resolving HOST through DNS: inside Docker it is a network alias.
fn connect(target: &str) -> io::Result<TcpStream> {
    let mut last_error = None;
    for address in resolve(target)? {
        match TcpStream::connect_timeout(&address, IO_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other(format!("{target} has no address"))))
}

/// Like [`connect`], retrying for a while: a dependency may still be starting.
fn connect_patiently(name: &str, target: &str) -> io::Result<TcpStream> {
    let deadline = Instant::now() + DEPENDENCY_PATIENCE;
    let mut waiting = false;
    loop {
        match connect(target) {
            Err(err) if Instant::now() < deadline => {
                if !waiting {
                    println!("{name}: waiting for dependency {target} ({err})");
                    waiting = true;
                }
                thread::sleep(Duration::from_millis(250));
            }
            result => return result,
        }
    }
}

fn resolve(target: &str) -> io::Result<Vec<SocketAddr>> {
    Ok(target.to_socket_addrs()?.collect())
}

/// A minimal HTTP/1.1 GET; enough to talk to another stand-in, which always closes the
/// connection after a response with a `Content-Length`.
fn http_get(target: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = connect(target)?;
    stream.set_read_timeout(Some(IO_TIMEOUT * 2))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other("not an HTTP response"))?;
    Ok((status, body.to_owned()))
}

/// `GET path` from the address in `variable` (as `envctl run` exports it): the body on
/// stdout, exit 0 on a 2xx answer.
fn fetch(variable: &str, path: &str) -> ExitCode {
    let Ok(target) = env::var(variable) else {
        eprintln!("standin: {variable} is not set");
        return ExitCode::from(2);
    };
    match http_get(&target, path) {
        Ok((status, body)) => {
            println!("{variable}={target} answered {status}");
            print!("{body}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("standin: GET {path} from {target}: {err}");
            ExitCode::FAILURE
        }
    }
}

impl Probe {
    /// Exit 0 when healthy: this is meant as an exec readiness probe or image HEALTHCHECK.
    fn run(self) -> ExitCode {
        let result = match &self {
            Probe::Tcp(port) => connect(&format!("127.0.0.1:{port}")).map(|_| ()),
            Probe::Http(port, path) => match http_get(&format!("127.0.0.1:{port}"), path) {
                Ok((status, _)) if (200..300).contains(&status) => Ok(()),
                Ok((status, _)) => Err(io::Error::other(format!("status {status}"))),
                Err(err) => Err(err),
            },
            Probe::File(path) => fs::metadata(path).map(|_| ()),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("probe failed: {err}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Makes SIGTERM and SIGINT end the process at once, or, when asked, logs and ignores SIGTERM.
///
/// In a container the stand-in runs as PID 1, and the kernel does not apply the default action
/// of a signal to PID 1: without a handler `docker stop` (and envctl's teardown) would wait for
/// the whole grace period and then SIGKILL. Std has no signal API, hence this small FFI; the
/// handlers only call `_exit` and `write`, which are async-signal-safe. Ignoring SIGTERM plays
/// the test images whose PID 1 is a shell that never forwards it.
mod signals {
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    unsafe extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn write(fd: i32, buf: *const u8, count: usize) -> isize;
        safe fn _exit(status: i32) -> !;
    }

    extern "C" fn exit_now(_signum: i32) {
        _exit(0);
    }

    extern "C" fn log_and_ignore(_signum: i32) {
        const LINE: &[u8] = b"standin: got SIGTERM, ignoring it\n";
        // SAFETY: writes a static buffer to stdout; `write` is async-signal-safe.
        unsafe { write(1, LINE.as_ptr(), LINE.len()) };
    }

    pub fn exit_on_termination(ignore_sigterm: bool) {
        let on_term: extern "C" fn(i32) = match ignore_sigterm {
            true => log_and_ignore,
            false => exit_now,
        };
        // SAFETY: both handlers are valid and only call async-signal-safe functions.
        unsafe {
            signal(SIGINT, exit_now);
            signal(SIGTERM, on_term);
        }
    }
}

/// A WebSocket echo at `/ws` (RFC 6455): enough of the protocol for tests of proxies in front
/// of a service, std-only like the rest.
mod websocket {
    use std::io::{self, Read, Write};
    use std::net::TcpStream;

    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    /// Accepts the upgrade, then echoes text and binary frames until a close frame.
    pub fn echo(mut stream: TcpStream, key: &str) -> io::Result<()> {
        let accept = base64(&sha1(format!("{key}{GUID}").as_bytes()));
        write!(
            stream,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )?;
        stream.set_read_timeout(None)?;
        loop {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head)?;
            let opcode = head[0] & 0x0f;
            let mut length = u64::from(head[1] & 0x7f);
            if length == 126 {
                let mut extended = [0u8; 2];
                stream.read_exact(&mut extended)?;
                length = u64::from(u16::from_be_bytes(extended));
            } else if length == 127 {
                let mut extended = [0u8; 8];
                stream.read_exact(&mut extended)?;
                length = u64::from_be_bytes(extended);
            }
            if length > 1 << 20 {
                return Ok(());
            }
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                stream.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; length as usize];
            stream.read_exact(&mut payload)?;
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            match opcode {
                0x8 => {
                    stream.write_all(&[0x88, 0])?;
                    return Ok(());
                }
                0x9 => frame(&mut stream, 0xA, &payload)?,
                0x1 | 0x2 => frame(&mut stream, opcode, &payload)?,
                _ => {}
            }
        }
    }

    /// An unmasked, unfragmented frame, as a server sends them.
    fn frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        stream.write_all(&out)
    }

    /// SHA-1 (FIPS 180-4), which the handshake requires.
    fn sha1(message: &[u8]) -> [u8; 20] {
        let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
        let mut data = message.to_vec();
        data.push(0x80);
        while data.len() % 64 != 56 {
            data.push(0);
        }
        data.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
        for block in data.chunks(64) {
            let mut w = [0u32; 80];
            for (i, word) in block.chunks(4).enumerate() {
                w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = h;
            for (i, word) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..20 => ((b & c) | (!b & d), 0x5A827999),
                    20..40 => (b ^ c ^ d, 0x6ED9EBA1),
                    40..60 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                    _ => (b ^ c ^ d, 0xCA62C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*word);
                e = d;
                d = c;
                c = b.rotate_left(30);
                b = a;
                a = t;
            }
            for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
                *state = state.wrapping_add(value);
            }
        }
        let mut out = [0u8; 20];
        for (i, word) in h.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_handshake_answers_the_rfc_example() {
            // RFC 6455 section 1.3.
            let key = "dGhlIHNhbXBsZSBub25jZQ==";
            let accept = super::base64(&super::sha1(format!("{key}{}", super::GUID).as_bytes()));
            assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        }
    }
}
