use std::sync::Arc;

use tokio::net::TcpListener;

use crate::cli::GatewayArgs;
use crate::gateway::activity::Guard;
use crate::gateway::lifecycle::Lifecycle;
use crate::gateway::{Gateway, Options, create, server};
use crate::signals::Signals;
use crate::spec::MAX_FILE_BYTES;
use crate::state::Store;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: GatewayArgs) -> Result<ExitStatus, Error> {
    let token = match &args.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    if !args.listen.ip().is_loopback() && token.is_none() {
        return Err(Error::Usage(format!(
            "listening on `{}`, beyond this machine, needs a token for the page's actions\n\
             hint: put a secret in a file readable only by you and add `--token-file FILE`",
            args.listen
        )));
    }
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.contains(['/', ':', ' ']) {
        return Err(Error::Usage(format!(
            "`{}` is not a domain name\nhint: `--domain localhost`, or a name whose wildcard \
             record points at this host",
            args.domain
        )));
    }
    let guard = match (args.max_error_rate, args.over) {
        (Some(max_rate), Some(window)) => Some(Guard { max_rate, window }),
        _ => None,
    };
    let signals = Signals::listen().map_err(Error::Signals)?;
    let backend = super::backend().await?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        Error::Usage(format!(
            "cannot listen on `{}`: {e}\nhint: pick another `--listen` address or port",
            args.listen
        ))
    })?;
    let listen = listener.local_addr().unwrap_or(args.listen);
    let options = Options {
        listen,
        domain,
        wake_timeout: args.wake_timeout,
        guard,
        token,
        max_body: args.max_body,
        request_timeout: args.request_timeout,
        create: args.create.then_some(create::Settings {
            ttl: args.create_ttl,
            per_client_hour: args.max_creates,
        }),
    };
    let store = Store::from_env();
    output::message(&format!(
        "gateway: the list at http://{}:{}/, environments at {} (state in {})",
        options.domain,
        listen.port(),
        // A placeholder, not an id: `url_of` would lowercase it into one.
        options.url_at(&format!("ID.{}", options.domain)),
        store.dir().display()
    ));
    let mut lifecycle = Lifecycle::new(backend, store, args.start_timeout);
    if args.create {
        let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
        let envdir = crate::spec::catalog::find_envdir(args.envdir.as_deref(), &cwd)
            .map_err(|e| Error::Usage(e.to_string()))?;
        lifecycle = lifecycle.with_envdir(envdir);
    }
    let environments = Arc::new(lifecycle);
    let gateway = Gateway::new(options, environments);
    server::serve(listener, gateway, signals.received(1)).await;
    output::message("gateway: stopped");
    Ok(ExitStatus::Success)
}

/// Reads the token, at most as much as an environment file: `/dev/zero` or a log given by
/// mistake fails at once instead of filling memory.
fn read_token(path: &std::path::Path) -> Result<String, Error> {
    use std::io::Read as _;
    let cannot_read = |e: std::io::Error| {
        Error::Usage(format!(
            "cannot read the token file `{}`: {e}",
            path.display()
        ))
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Usage(format!(
            "the token file `{}` is larger than {} MiB, too large for a token\n\
             hint: `head -c 24 /dev/urandom | base64 > FILE` makes one",
            path.display(),
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        cannot_read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })?;
    let token = text.trim();
    if token.len() < 8
        || token
            .chars()
            .any(|c| c.is_whitespace() || c == ';' || c == ',')
    {
        return Err(Error::Usage(format!(
            "the token in `{}` must be at least 8 characters, without spaces, `;` or `,`\n\
             hint: `head -c 24 /dev/urandom | base64 > {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(token.to_string())
}
