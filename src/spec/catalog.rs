//! Finding the environment a command means: `-f FILE`, `ENV`, or the file holding `SERVICE@REF`.

use std::path::{Path, PathBuf};

use super::{Environment, LoadError, Override, did_you_mean, load, load_all};

/// Where environment files are looked up.
#[derive(Debug, Clone)]
pub enum Catalog {
    /// Every `*.yaml` / `*.yml` file in a directory.
    Dir(PathBuf),
    /// The files given with `-f`: one environment, each later file overriding the earlier.
    Files(Vec<PathBuf>),
}

/// The directory of environment files: `--envdir` or `ENVCTL_ENVDIR` when given, else
/// `./environments`, else `environments/` at the root of the git repository around `cwd` (the
/// nearest directory holding `.git`), so envctl works from anywhere in a clone.
pub fn find_envdir(given: Option<&Path>, cwd: &Path) -> Result<PathBuf, LoadError> {
    const DIR: &str = "environments";
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    if cwd.join(DIR).is_dir() {
        return Ok(PathBuf::from(DIR));
    }
    let root = cwd.ancestors().find(|dir| dir.join(".git").exists());
    if let Some(root) = root
        && root.join(DIR).is_dir()
    {
        return Ok(root.join(DIR));
    }
    let looked = match root {
        Some(root) if root != cwd => format!(
            "`./{DIR}` and `{}` (the repository root's)",
            root.join(DIR).display()
        ),
        Some(_) => format!("`./{DIR}` (the repository root's)"),
        None => format!(
            "`./{DIR}`, and found no git repository around `{}`",
            cwd.display()
        ),
    };
    Err(LoadError::Selection(format!(
        "no environment directory: --envdir and ENVCTL_ENVDIR are not set, and there is no \
         {looked}\nhint: `--envdir DIR` or `ENVCTL_ENVDIR=DIR` names the directory of \
         environment files; `-f FILE` names one file"
    )))
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `ENV`: an environment's name or its file stem.
    pub environment: Option<String>,
    /// `SERVICE@REF`s.
    pub overrides: Vec<Override>,
}

impl Target {
    /// Splits positional words: `SERVICE@REF` words are overrides, a plain first word is `ENV`.
    pub fn from_words(words: &[String]) -> Result<Target, String> {
        let mut target = Target::default();
        for (i, word) in words.iter().enumerate() {
            if word.contains('@') {
                target.overrides.push(word.parse()?);
            } else if i == 0 {
                target.environment = Some(word.clone());
            } else {
                return Err(format!(
                    "unexpected argument `{word}`: expected SERVICE@REF (like `accounting@ea6757a`)"
                ));
            }
        }
        Ok(target)
    }
}

impl Catalog {
    /// All environment files, sorted by path.
    pub fn files(&self) -> Result<Vec<PathBuf>, LoadError> {
        match self {
            Catalog::Files(paths) => Ok(paths.clone()),
            Catalog::Dir(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.is_file()
                            && matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("yaml" | "yml")
                            )
                    })
                    .collect();
                files.sort();
                Ok(files)
            }
        }
    }

    /// Finds and loads the environment `target` names, with its overrides applied.
    pub fn select(&self, target: &Target) -> Result<Environment, LoadError> {
        let mut environment = match (self, &target.environment) {
            (Catalog::Files(paths), _) => load_all(paths)?,
            (Catalog::Dir(dir), Some(name)) => self.by_name(dir, name)?,
            (Catalog::Dir(dir), None) => self.by_services(dir, target)?,
        };
        if let (Catalog::Files(_), Some(name)) = (self, &target.environment)
            && &environment.name != name
        {
            return Err(LoadError::Selection(format!(
                "`{}` declares environment `{}`, not `{name}`",
                environment.path.display(),
                environment.name
            )));
        }
        environment
            .apply(&target.overrides)
            .map_err(LoadError::Selection)?;
        Ok(environment)
    }

    fn by_name(&self, dir: &Path, name: &str) -> Result<Environment, LoadError> {
        for extension in ["yaml", "yml"] {
            let path = dir.join(format!("{name}.{extension}"));
            if path.is_file() {
                return load(&path);
            }
        }
        // A file may declare a `name:` other than its stem.
        let mut names = Vec::new();
        for path in self.files()? {
            if let Ok(environment) = load(&path) {
                if environment.name == name {
                    return Ok(environment);
                }
                names.push(environment.name);
            }
        }
        let hint = match did_you_mean(name, names.iter().map(String::as_str)) {
            Some(best) => format!("\nhint: did you mean `{best}`?"),
            None if names.is_empty() => String::new(),
            None => format!("\nhint: environments here: {}", names.join(", ")),
        };
        Err(LoadError::Selection(format!(
            "no environment `{name}` in `{}`{hint}",
            dir.display()
        )))
    }

    fn by_services(&self, dir: &Path, target: &Target) -> Result<Environment, LoadError> {
        let mut candidates = Vec::new();
        let mut broken = Vec::new();
        for path in self.files()? {
            match load(&path) {
                Ok(environment)
                    if target
                        .overrides
                        .iter()
                        .all(|o| environment.services.contains_key(&o.service)) =>
                {
                    candidates.push(environment)
                }
                Ok(_) => {}
                Err(error) => broken.push(error),
            }
        }
        // `envctl up accounting@ea6757a` means the environment named after its service when
        // several environments have that service (the demo has an `accounting` too).
        if candidates.len() > 1
            && let Some(first) = target.overrides.first()
            && let Some(named) = candidates.iter().position(|e| e.name == first.service)
        {
            return Ok(candidates.swap_remove(named));
        }
        match candidates.len() {
            1 => Ok(candidates.pop().expect("one candidate")),
            0 if !broken.is_empty() => Err(broken.remove(0)),
            0 if target.overrides.is_empty() => Err(LoadError::Selection(format!(
                "no environment files in `{}`\nhint: point `--envdir` or `ENVCTL_ENVDIR` at a \
                 directory of environment files, or use `-f FILE`",
                dir.display()
            ))),
            0 => {
                let services: Vec<String> = target
                    .overrides
                    .iter()
                    .map(|o| format!("`{}`", o.service))
                    .collect();
                Err(LoadError::Selection(format!(
                    "no environment in `{}` has the service {}",
                    dir.display(),
                    services.join(" and ")
                )))
            }
            _ => {
                let names: Vec<String> = candidates
                    .iter()
                    .map(|e| format!("`{}` ({})", e.name, e.path.display()))
                    .collect();
                Err(LoadError::Selection(format!(
                    "several environments match: {}\nhint: name one, like `envctl up {} ...`",
                    names.join(", "),
                    candidates[0].name
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn a_given_envdir_wins() {
        let cwd = dir();
        std::fs::create_dir(cwd.path().join("environments")).unwrap();
        let found = find_envdir(Some(Path::new("/elsewhere")), cwd.path()).unwrap();
        assert_eq!(found, Path::new("/elsewhere"));
    }

    #[test]
    fn the_current_directory_comes_before_the_repository_root() {
        let root = dir();
        std::fs::create_dir(root.path().join(".git")).unwrap();
        std::fs::create_dir(root.path().join("environments")).unwrap();
        let sub = root.path().join("module");
        std::fs::create_dir_all(sub.join("environments")).unwrap();
        assert_eq!(find_envdir(None, &sub).unwrap(), Path::new("environments"));
        let deeper = root.path().join("a/b");
        std::fs::create_dir_all(&deeper).unwrap();
        assert_eq!(
            find_envdir(None, &deeper).unwrap(),
            root.path().join("environments")
        );
    }

    #[test]
    fn a_worktree_root_with_a_git_file_counts() {
        let root = dir();
        std::fs::write(root.path().join(".git"), "gitdir: /x\n").unwrap();
        std::fs::create_dir(root.path().join("environments")).unwrap();
        let sub = root.path().join("src");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            find_envdir(None, &sub).unwrap(),
            root.path().join("environments")
        );
    }

    #[test]
    fn none_found_names_the_places_looked_in() {
        let root = dir();
        std::fs::create_dir(root.path().join(".git")).unwrap();
        let sub = root.path().join("src");
        std::fs::create_dir(&sub).unwrap();
        let message = find_envdir(None, &sub).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "no environment directory: --envdir and ENVCTL_ENVDIR are not set, and there is \
                 no `./environments` and `{}/environments` (the repository root's)\n\
                 hint: `--envdir DIR` or `ENVCTL_ENVDIR=DIR` names the directory of environment \
                 files; `-f FILE` names one file",
                root.path().display()
            )
        );
    }
}
