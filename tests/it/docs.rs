//! The docs checked like code, in the spirit of just's `tests/readme.rs`: `docs/cli.md` is
//! generated from the clap definitions, every YAML block of the README and `docs/` is read by
//! envctl's own environment-file loader, every `envctl ...` line parses with the real command
//! line, and every relative link resolves. No engine; CONTRIBUTING.md says how to mark blocks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory, Parser};
use envctl::cli::Cli;

/// The file `cli_reference_is_up_to_date` writes when this variable is set.
const UPDATE: &str = "ENVCTL_UPDATE_DOCS";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README, CONTRIBUTING.md and every page of `docs/`, sorted.
fn documents() -> Vec<PathBuf> {
    let mut paths = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    paths.extend(pages);
    paths
}

/// `docs/cli.md` as the clap definitions make it: every command's long `--help`, in order.
fn cli_reference() -> String {
    let mut command = hide_env_values(Cli::command().term_width(100));
    command.build();
    let mut text = String::from(
        "# Command reference\n\n\
         <!-- Generated from src/cli.rs by tests/it/docs.rs: do not edit. Regenerate with\n     \
         `ENVCTL_UPDATE_DOCS=1 cargo test --test it docs::cli_reference` -->\n\n\
         Every command's `--help`, as `envctl COMMAND --help` prints it, but for the options of\n\
         `envctl` itself (`-v`, `-H`, `--context`, `--backend`): they apply to every command and\n\
         are listed once, under `envctl`.\n",
    );
    write_command(&mut text, &command, "envctl");
    let globals: Vec<_> = command
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| arg.get_id().clone())
        .collect();
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("envctl {}", sub.get_name());
        // Listed once, under `envctl`, rather than under every command.
        let sub = globals
            .iter()
            .fold(sub.clone(), |sub, id| sub.mut_arg(id, |arg| arg.hide(true)));
        write_command(&mut text, &sub, &name);
    }
    text
}

/// Shows `[env: NAME]` without the value the variable has where the generator runs.
fn hide_env_values(command: Command) -> Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    let mut command = command.mut_args(|arg| arg.hide_env_values(true));
    for name in names {
        command = command.mut_subcommand(name, hide_env_values);
    }
    command
}

fn write_command(text: &mut String, command: &Command, name: &str) {
    let help = command
        .clone()
        .term_width(100)
        .render_long_help()
        .to_string();
    let help: Vec<&str> = help.lines().map(str::trim_end).collect();
    write!(text, "\n## `{name}`\n\n```text\n{}\n```\n", help.join("\n")).unwrap();
}

#[test]
fn cli_reference_is_up_to_date() {
    let path = root().join("docs/cli.md");
    let expected = cli_reference();
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&path, &expected).expect("write docs/cli.md");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "docs/cli.md differs from the clap definitions in src/cli.rs (first at line {})\n\
             hint: regenerate it with `{UPDATE}=1 cargo test --test it docs::cli_reference`",
            line + 1
        );
    }
}

/// A fenced block of a Markdown file: its info string, the line of its first content line,
/// and its lines without the fence's indentation.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Block)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let block = Block {
                        info: info.trim().to_string(),
                        line: index + 2,
                        lines: Vec::new(),
                    };
                    open = Some((indent, block));
                }
            }
            Some((fence_indent, block)) => {
                if trimmed.starts_with("```") {
                    blocks.push(open.take().expect("an open block").1);
                } else {
                    let cut = (*fence_indent).min(indent);
                    block.lines.push(line[cut..].to_string());
                }
            }
        }
    }
    blocks
}

/// Each document's name as the failures give it, and its text.
fn read(path: &Path) -> (String, String) {
    let name = path
        .strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
    (name, text)
}

fn fail_on(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "{} {what}:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// A ```yaml block is a whole environment file, read by `spec::load_all` as `envctl plan -f`
/// reads one. ```yaml override is an override file, read after the last whole file above it
/// as `-f BASE -f OVERRIDE` reads it. ```yaml fragment is YAML that is no whole environment
/// file (a skeleton with placeholders, a CI system's file), checked as YAML only.
#[test]
fn every_yaml_block_is_a_valid_environment_file() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let mut problems = Vec::new();
    for path in documents() {
        let (name, text) = read(&path);
        let mut base: Option<PathBuf> = None;
        for (n, block) in blocks(&text).into_iter().enumerate() {
            let mut words = block.info.split_whitespace();
            if words.next() != Some("yaml") {
                continue;
            }
            let at = format!("{name}:{}", block.line);
            let source = block.lines.join("\n") + "\n";
            let file = scratch
                .path()
                .join(format!("{}-{n}", name.replace('/', "-")));
            std::fs::create_dir_all(&file).expect("a block's directory");
            let file = file.join("environment.yaml");
            std::fs::write(&file, &source).expect("write a block");
            let paths = match words.next() {
                None => vec![file.clone()],
                Some("override") => match &base {
                    Some(base) => vec![base.clone(), file.clone()],
                    None => {
                        problems.push(format!("{at}: an override with no whole file above it"));
                        continue;
                    }
                },
                Some("fragment") => {
                    if let Err(error) = serde_saphyr::from_str::<serde_json::Value>(&source) {
                        problems.push(format!("{at}: not YAML: {error}"));
                    }
                    continue;
                }
                Some(other) => {
                    problems.push(format!(
                        "{at}: unknown marker `{other}` (expected `override` or `fragment`)"
                    ));
                    continue;
                }
            };
            create_env_files(&file, &source);
            match envctl::spec::load_all(&paths) {
                Ok(_) if paths.len() == 1 => base = Some(file),
                Ok(_) => {}
                Err(error) => problems.push(format!(
                    "{at}: the block does not load (its line 1 is line {} of {name}):\n{error}",
                    block.line
                )),
            }
        }
    }
    fail_on(
        problems,
        "YAML blocks of the docs are not what envctl reads",
    );
}

/// The `env_file`s a block names, created empty beside it: the docs show files that live next
/// to their own `env_file`s, and the loader reads them.
fn create_env_files(file: &Path, source: &str) {
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(source) else {
        return;
    };
    let services = value["services"].as_object().into_iter().flatten();
    for (_, service) in services {
        let names = match &service["env_file"] {
            serde_json::Value::String(name) => vec![name.clone()],
            serde_json::Value::Array(names) => names
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        for name in names {
            let path = file.parent().expect("a block's directory").join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("env_file dir");
            std::fs::write(path, "").expect("an empty env_file");
        }
    }
}

/// The `envctl ...` command lines of a block: lines starting with `$ envctl `, and in a shell
/// block (`shell`) also with `envctl `, joined over trailing backslashes. In a ```console or
/// ```text block a line without the prompt is output (a `--help` text says "envctl starts ...").
fn command_lines(block: &Block, shell: bool) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut lines = block.lines.iter().enumerate();
    while let Some((index, line)) = lines.next() {
        let line = match line.strip_prefix("$ ") {
            Some(command) => command,
            None if shell => line,
            None => continue,
        };
        if !line.starts_with("envctl ") {
            continue;
        }
        let mut command = line.to_string();
        while command.ends_with('\\') {
            command.pop();
            match lines.next() {
                Some((_, next)) => command.push_str(next),
                None => break,
            }
        }
        found.push((block.line + index, command));
    }
    found
}

/// Splits a command line into words as a POSIX shell would, without expanding anything, up to
/// the first unquoted comment, pipe, list operator or redirection.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '#' if word.is_none() => break,
            '|' | ';' | '&' | '>' | '<' => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("an unclosed `'`".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => return Err("an unclosed `\"`".into()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[test]
fn every_envctl_line_parses_with_the_real_command_line() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in documents() {
        let (name, text) = read(&path);
        for block in blocks(&text) {
            let language = block.info.split_whitespace().next().unwrap_or("");
            if !matches!(language, "sh" | "console" | "text") {
                continue;
            }
            for (line, command) in command_lines(&block, language == "sh") {
                checked += 1;
                let at = format!("{name}:{line}");
                match shell_words(&command) {
                    Err(error) => problems.push(format!("{at}: `{command}`: {error}")),
                    Ok(words) => {
                        if let Err(error) = Cli::try_parse_from(&words) {
                            let error = error.render().to_string();
                            problems.push(format!("{at}: `{command}`\n{}", error.trim_end()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} envctl lines: is the scanner broken?"
    );
    fail_on(problems, "envctl lines of the docs do not parse");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings, outside code blocks.
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every Markdown link's target outside code blocks, with its line.
fn links(text: &str) -> Vec<(usize, String)> {
    let link = regex::Regex::new(r"\]\(([^()\s]+)\)").expect("a regex");
    let mut fenced = false;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            for capture in link.captures_iter(line) {
                found.push((index + 1, capture[1].to_string()));
            }
        }
    }
    found
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    for path in documents() {
        let (name, text) = read(&path);
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = match file {
                "" => path.clone(),
                file => path.parent().expect("a directory").join(file),
            };
            if !resolved.exists() {
                problems.push(format!("{name}:{line}: `{target}`: no such file"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&target_text).iter().any(|a| a == fragment) {
                problems.push(format!(
                    "{name}:{line}: `{target}`: no heading `#{fragment}`"
                ));
            }
        }
    }
    fail_on(problems, "links of the docs lead nowhere");
}

#[test]
fn shell_words_split_as_a_shell_does() {
    let words = |line: &str| shell_words(line).unwrap();
    assert_eq!(
        words("envctl run accounting@${GIT_COMMIT} -- mvn verify   # a comment"),
        [
            "envctl",
            "run",
            "accounting@${GIT_COMMIT}",
            "--",
            "mvn",
            "verify"
        ]
    );
    assert_eq!(
        words("envctl graph accounting | dot -Tsvg > accounting.svg"),
        ["envctl", "graph", "accounting"]
    );
    assert_eq!(
        words(r#"envctl up 'a b' "c\"d" e#f"#),
        ["envctl", "up", "a b", "c\"d", "e#f"]
    );
    assert!(shell_words("envctl up 'open").is_err());
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor(" Which engine, and how envctl reaches it"),
        "which-engine-and-how-envctl-reaches-it"
    );
    assert_eq!(
        anchor(" `SERVICE@REF`: which image"),
        "serviceref-which-image"
    );
    assert_eq!(
        anchor(" The gateway: one front door for every environment"),
        "the-gateway-one-front-door-for-every-environment"
    );
}
