use futures_util::StreamExt;
use futures_util::stream::select_all;

use crate::backend::LogOptions;
use crate::cli::LogsArgs;
use crate::lifecycle;
use crate::{Error, ExitStatus, output};

pub async fn exec(args: LogsArgs) -> Result<ExitStatus, Error> {
    let backend = super::backend().await?;
    let instance = lifecycle::require(backend.as_ref(), &args.id).await?;
    crate::state::touch(backend.endpoint(), &instance.id, "envctl logs");
    let containers: Vec<_> = instance
        .services
        .iter()
        .filter(|c| args.service.as_ref().is_none_or(|s| c.service() == s))
        .collect();
    if containers.is_empty() {
        let service = args.service.unwrap_or_default();
        return Err(Error::NotFound(format!(
            "environment `{}` has no service `{service}`",
            args.id
        )));
    }
    let width = containers
        .iter()
        .map(|c| c.service().len())
        .max()
        .unwrap_or(0);
    let options = LogOptions {
        follow: args.follow,
        tail: args.tail,
        timestamps: true,
        since: None,
    };
    let streams = containers.iter().map(|c| {
        let service = format!("{:<width$}", c.service());
        backend
            .logs(&c.handle, options)
            .map(move |line| line.map(|l| (l.timestamp, service.clone(), l.text)))
            .boxed()
    });
    let mut merged = select_all(streams);
    if args.follow {
        // Lines appear as they come, interleaved across services.
        while let Some(line) = merged.next().await {
            let (_, service, text) = line?;
            output::data(&format!("{service} | {text}"));
        }
    } else {
        // The whole history is there: sort it by time so the services interleave truly.
        let mut lines = Vec::new();
        while let Some(line) = merged.next().await {
            lines.push(line?);
        }
        lines.sort_by_key(|line| line.0);
        let text: String = lines
            .iter()
            .map(|(_, service, text)| format!("{service} | {text}\n"))
            .collect();
        if !text.is_empty() {
            output::data(&text);
        }
    }
    Ok(ExitStatus::Success)
}
