//! Errors that point at the source, like a compiler's.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in an environment file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Which of the environment's files (the first `-f` is 0).
    pub file: usize,
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub(crate) fn from_location(location: serde_saphyr::Location) -> Option<Self> {
        let (line, column) = (location.line(), location.column());
        (line > 0).then(|| Position {
            file: 0,
            line: line as usize,
            column: column.max(1) as usize,
        })
    }
}

/// One problem in an environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub position: Option<Position>,
    /// The file a diagnostic without a position is about.
    pub file: usize,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, position: Option<Position>) -> Self {
        Diagnostic {
            message: message.into(),
            position,
            file: position.map_or(0, |p| p.file),
            hint: None,
        }
    }

    /// Names the file of a diagnostic that has no position.
    pub fn in_file(mut self, file: usize) -> Self {
        self.file = file;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// One file of an environment: its path (as messages name it) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Every problem found in an environment's files, reported together.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub sources: Vec<Source>,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    pub fn new(path: &Path, source: &str, diagnostics: Vec<Diagnostic>) -> Self {
        let source = Source {
            path: path.to_path_buf(),
            text: source.to_string(),
        };
        SpecError::of(vec![source], diagnostics)
    }

    /// Problems in several files, sorted by file, then position.
    pub fn of(sources: Vec<Source>, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.file, d.position.map(|p| (p.line, p.column))));
        SpecError {
            sources,
            diagnostics,
        }
    }
}

impl std::error::Error for SpecError {}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                write!(f, "error: ")?;
            }
            let source = self
                .sources
                .get(diagnostic.file)
                .or(self.sources.first())
                .expect("a spec error names its files");
            render(f, &source.path, &source.text, diagnostic)?;
        }
        Ok(())
    }
}

/// Renders one diagnostic without the leading `error: `, which the caller prints:
///
/// ```text
/// service `accounting` depends on unknown service `oracle`
///   --> environments/accounting.yaml:14:9
///    |
/// 14 |       - oracle
///    |         ^^^^^^
/// hint: did you mean `oracle-xe`?
/// ```
fn render(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    source: &str,
    diagnostic: &Diagnostic,
) -> fmt::Result {
    write!(f, "{}", clip(&diagnostic.message, MAX_MESSAGE))?;
    match diagnostic.position {
        Some(Position { line, column, .. }) => {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            // The real column, though a long line is shown in a window around it.
            write!(f, "\n{pad}--> {}:{line}:{column}", path.display())?;
            let (text, shown_column) = window(source.lines().nth(line - 1).unwrap_or(""), column);
            let text = text.as_str();
            write!(f, "\n{pad} |\n{line} | {text}\n{pad} | ")?;
            let start = shown_column.saturating_sub(1);
            let prefix: String = text
                .chars()
                .take(start)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{prefix}{}", "^".repeat(token_width(text, start)))?;
        }
        None => write!(f, "\n  --> {}", path.display())?,
    }
    if let Some(hint) = &diagnostic.hint {
        write!(f, "\nhint: {hint}")?;
    }
    Ok(())
}

const MAX_MESSAGE: usize = 400;
const MAX_LINE: usize = 120;

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A long source line cut to a window around `column`, and the column within the window.
fn window(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_LINE {
        return (line.to_string(), column);
    }
    let from = column
        .saturating_sub(1)
        .saturating_sub(MAX_LINE / 3)
        .min(chars.len());
    let to = (from + MAX_LINE).min(chars.len());
    let mut shown: String = if from > 0 {
        "…".into()
    } else {
        String::new()
    };
    shown.extend(&chars[from..to]);
    if to < chars.len() {
        shown.push('…');
    }
    (shown, column - from + usize::from(from > 0))
}

/// How many carets to draw under the token starting at character `start`.
fn token_width(line: &str, start: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(start).collect();
    let width = match rest.first() {
        Some(&quote @ ('"' | '\'')) => rest[1..]
            .iter()
            .position(|&c| c == quote)
            .map_or(rest.len(), |end| end + 2),
        _ => rest
            .iter()
            .position(|&c| c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#'))
            .unwrap_or(rest.len()),
    };
    let width = if rest.get(width.saturating_sub(1)) == Some(&':') && width > 1 {
        width - 1
    } else {
        width
    };
    width.max(1)
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_caret_under_the_token() {
        let source = "services:\n  a:\n    depends_on:\n      - oracle\n";
        let error = SpecError::new(
            Path::new("environments/x.yaml"),
            source,
            vec![
                Diagnostic::new(
                    "service `a` depends on unknown service `oracle`",
                    Some(Position {
                        file: 0,
                        line: 4,
                        column: 9,
                    }),
                )
                .with_hint("did you mean `oracle-xe`?"),
            ],
        );
        assert_eq!(
            error.to_string(),
            "service `a` depends on unknown service `oracle`\n \
             --> environments/x.yaml:4:9\n  |\n4 |       - oracle\n  |         ^^^^^^\n\
             hint: did you mean `oracle-xe`?"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["oracle-xe", "activemq"];
        assert_eq!(did_you_mean("oracle", names), Some("oracle-xe"));
        assert_eq!(did_you_mean("proxy", names), None);
    }
}
