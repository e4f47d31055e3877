//! `SERVICE@REF`: which tag REF means, from the local images first, then the registry's tag
//! list, as the service's pull policy allows.

use crate::backend::{Backend, BackendError};
use crate::registry::{self, Insecure, Reference, RegistryError};
use crate::spec::{ImageRef, PullPolicy, Service};

/// How many candidates a message lists.
const SHOWN: usize = 10;

/// Where a tag list came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Registry,
}

impl Source {
    fn describe(self, repository: &str) -> String {
        match self {
            Source::Local => format!("the local tags of `{repository}`"),
            Source::Registry => format!("the registry's tags of `{repository}`"),
        }
    }
}

/// Why REF names no single tag.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error(
        "`{reference}` matches several of {}: {}\nhint: give more of the changeset, like `{service}@{}`",
        origin.describe(repository), list(candidates), candidates[0]
    )]
    Ambiguous {
        service: String,
        repository: String,
        reference: String,
        origin: Source,
        candidates: Vec<String>,
    },
    #[error(
        "no tag of `{repository}` starts with `{reference}`, among {}{}",
        match sources.as_slice() {
            [Source::Local] => "its local tags",
            [Source::Registry] => "its registry's tags",
            _ => "its local tags and its registry's",
        },
        closest_hint(closest)
    )]
    Unknown {
        repository: String,
        reference: String,
        sources: Vec<Source>,
        /// The tags closest to REF, by shared prefix.
        closest: Vec<String>,
    },
    #[error(
        "no local tag of `{repository}` starts with `{reference}`, and its registry's tags could \
         not be listed: {error}"
    )]
    Registry {
        repository: String,
        reference: String,
        error: RegistryError,
    },
    #[error("cannot list the local tags of `{repository}`: {error}")]
    Engine {
        repository: String,
        error: BackendError,
    },
}

impl RefError {
    /// Whether the REF itself is wrong, rather than a registry or the engine failing.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, RefError::Ambiguous { .. } | RefError::Unknown { .. })
    }

    /// Whether the registry could not be reached at all (rather than refusing or failing).
    pub fn is_reachability(&self) -> bool {
        matches!(
            self,
            RefError::Registry {
                error: RegistryError::Unreachable { .. },
                ..
            }
        )
    }
}

fn list(tags: &[String]) -> String {
    let mut shown: Vec<String> = tags.iter().take(SHOWN).map(|t| format!("`{t}`")).collect();
    if tags.len() > SHOWN {
        shown.push(format!("and {} more", tags.len() - SHOWN));
    }
    shown.join(", ")
}

fn closest_hint(closest: &[String]) -> String {
    match closest.is_empty() {
        true => "\nhint: the repository has no tags there; was the image pushed?".into(),
        false => format!("\nhint: the closest tags are {}", list(closest)),
    }
}

/// What a tag list says about REF.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// REF is a tag, or the start of exactly one.
    One(String),
    Several(Vec<String>),
    None,
}

/// REF itself when it is a tag, else the one tag starting with it.
pub fn pick(tags: &[String], reference: &str) -> Pick {
    if tags.iter().any(|t| t == reference) {
        return Pick::One(reference.to_string());
    }
    let mut matches: Vec<String> = tags
        .iter()
        .filter(|t| t.starts_with(reference))
        .cloned()
        .collect();
    matches.sort();
    matches.dedup();
    match matches.len() {
        0 => Pick::None,
        1 => Pick::One(matches.remove(0)),
        _ => Pick::Several(matches),
    }
}

/// The tags sharing the longest start with REF, the most similar first.
pub fn closest(tags: &[String], reference: &str) -> Vec<String> {
    let shared = |t: &String| {
        t.chars()
            .zip(reference.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let best = tags.iter().map(shared).max().unwrap_or(0);
    let mut closest: Vec<String> = match best {
        0 => tags.to_vec(),
        _ => tags.iter().filter(|t| shared(t) == best).cloned().collect(),
    };
    closest.sort();
    closest.truncate(SHOWN);
    closest
}

/// The full tag `SERVICE@REF` names for `service` (whose image tag is REF), or `None` when
/// nothing local matches and the image is to be built or looked up as given.
///
/// `missing` looks at the local tags, then the registry's; `always` at the registry's only, as
/// the image is pulled anyway; `never` at the local ones only. A service with `build:` never
/// asks the registry: its image is built when missing.
pub async fn choose_tag(
    backend: &dyn Backend,
    service: &Service,
    pull: PullPolicy,
) -> Result<Option<String>, RefError> {
    let image = &service.image;
    let local = async || {
        backend
            .image_tags(&image.repository)
            .await
            .map_err(|error| RefError::Engine {
                repository: image.repository.clone(),
                error,
            })
    };
    let registry = async || {
        // Without the engine's settings, only registries on this machine may speak plain HTTP.
        let insecure = backend.insecure_registries().await.unwrap_or_default();
        registry_tags(image, &insecure).await
    };
    choose(service, pull, local, registry).await
}

/// [`choose_tag`] with the two tag lists as functions, each called only when needed.
async fn choose(
    service: &Service,
    pull: PullPolicy,
    local: impl AsyncFnOnce() -> Result<Vec<String>, RefError>,
    registry: impl AsyncFnOnce() -> Result<Vec<String>, RefError>,
) -> Result<Option<String>, RefError> {
    let image = &service.image;
    let reference = &image.tag;
    let use_registry = service.build.is_none() && pull != PullPolicy::Never;
    if pull != PullPolicy::Always || !use_registry {
        let tags = local().await?;
        match pick(&tags, reference) {
            Pick::One(tag) => return Ok(Some(tag)),
            Pick::Several(candidates) => {
                return Err(ambiguous(service, Source::Local, candidates));
            }
            Pick::None if !use_registry && service.build.is_some() => return Ok(None),
            Pick::None if !use_registry => {
                return Err(RefError::Unknown {
                    repository: image.repository.clone(),
                    reference: reference.clone(),
                    sources: vec![Source::Local],
                    closest: closest(&tags, reference),
                });
            }
            Pick::None => {}
        }
    }
    let tags = registry().await?;
    match pick(&tags, reference) {
        Pick::One(tag) => Ok(Some(tag)),
        Pick::Several(candidates) => Err(ambiguous(service, Source::Registry, candidates)),
        Pick::None => Err(RefError::Unknown {
            repository: image.repository.clone(),
            reference: reference.clone(),
            sources: match pull {
                PullPolicy::Always => vec![Source::Registry],
                _ => vec![Source::Local, Source::Registry],
            },
            closest: closest(&tags, reference),
        }),
    }
}

fn ambiguous(service: &Service, source: Source, candidates: Vec<String>) -> RefError {
    RefError::Ambiguous {
        service: service.name.clone(),
        repository: service.image.repository.clone(),
        reference: service.image.tag.clone(),
        origin: source,
        candidates,
    }
}

pub async fn registry_tags(image: &ImageRef, insecure: &Insecure) -> Result<Vec<String>, RefError> {
    let failed = |error| RefError::Registry {
        repository: image.repository.clone(),
        reference: image.tag.clone(),
        error,
    };
    let reference = Reference::parse(&image.repository).map_err(|reason| {
        failed(RegistryError::Protocol {
            registry: image.repository.clone(),
            operation: "read the image name".into(),
            reason,
        })
    })?;
    tracing::debug!("listing the tags of `{reference}` in its registry");
    match registry::tags(&reference, insecure).await {
        Ok(tags) => Ok(tags),
        // A repository the registry does not know has no tags: REF is unknown there.
        Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
        Err(error) => Err(failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Build, Ready};

    fn service(tag: &str, built: bool) -> Service {
        Service {
            name: "accounting".into(),
            image: ImageRef {
                repository: "registry.example.com/accounting".into(),
                tag: tag.into(),
            },
            build: built.then(|| Build {
                context: "ctx".into(),
                dockerfile: "Dockerfile".into(),
            }),
            command: None,
            env: Vec::new(),
            runtime: Default::default(),
            depends_on: Default::default(),
            links: Vec::new(),
            ready: Ready {
                probes: Vec::new(),
                timeout: std::time::Duration::from_secs(1),
            },
            pull: PullPolicy::Missing,
        }
    }

    /// A tag list that may be asked for, or one that must not be.
    fn listing(
        list: &'static [&'static str],
    ) -> impl AsyncFnOnce() -> Result<Vec<String>, RefError> {
        async move || Ok(tags(list))
    }

    fn never_asked(which: &'static str) -> impl AsyncFnOnce() -> Result<Vec<String>, RefError> {
        async move || panic!("the {which} tags were asked for")
    }

    #[tokio::test]
    async fn missing_takes_a_local_match_without_asking_the_registry() {
        let chosen = choose(
            &service("ea67", false),
            PullPolicy::Missing,
            listing(&["ea6757a8090d", "d277d11f1376"]),
            never_asked("registry"),
        )
        .await;
        assert_eq!(chosen.unwrap(), Some("ea6757a8090d".into()));
    }

    #[tokio::test]
    async fn missing_asks_the_registry_when_nothing_local_matches() {
        let chosen = choose(
            &service("ea67", false),
            PullPolicy::Missing,
            listing(&["d277d11f1376"]),
            listing(&["ea6757a8090d", "0b3c1d9e0000"]),
        )
        .await;
        assert_eq!(chosen.unwrap(), Some("ea6757a8090d".into()));
        let error = choose(
            &service("ff", false),
            PullPolicy::Missing,
            listing(&[]),
            listing(&["ea6757a8090d"]),
        )
        .await
        .unwrap_err();
        assert!(error.is_bad_input());
        assert!(
            error.to_string().contains(
                "no tag of `registry.example.com/accounting` starts with `ff`, among its local \
                 tags and its registry's"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn always_asks_only_the_registry() {
        let chosen = choose(
            &service("ea67", false),
            PullPolicy::Always,
            never_asked("local"),
            listing(&["ea6757a8090d"]),
        )
        .await;
        assert_eq!(chosen.unwrap(), Some("ea6757a8090d".into()));
    }

    #[tokio::test]
    async fn never_asks_only_the_local_tags() {
        let error = choose(
            &service("ea67", false),
            PullPolicy::Never,
            listing(&["d277d11f1376"]),
            never_asked("registry"),
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("starts with `ea67`, among its local tags\n")
                && text.contains("hint: the closest tags are `d277d11f1376`"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_built_service_is_built_as_given_rather_than_looked_up_in_a_registry() {
        for pull in [PullPolicy::Missing, PullPolicy::Always, PullPolicy::Never] {
            let chosen = choose(
                &service("ea67", true),
                pull,
                listing(&["d277d11f1376"]),
                never_asked("registry"),
            )
            .await;
            assert_eq!(chosen.unwrap(), None, "{pull:?}");
        }
    }

    #[tokio::test]
    async fn several_local_matches_are_ambiguous_before_any_registry() {
        let error = choose(
            &service("ea67", false),
            PullPolicy::Missing,
            listing(&["ea6757a8090d", "ea6799b00000"]),
            never_asked("registry"),
        )
        .await
        .unwrap_err();
        assert!(error.is_bad_input());
        assert!(
            error
                .to_string()
                .starts_with("`ea67` matches several of the local tags of"),
            "{error}"
        );
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn an_exact_tag_wins_over_longer_ones() {
        let list = tags(&["1", "10", "11"]);
        assert_eq!(pick(&list, "1"), Pick::One("1".into()));
        assert_eq!(pick(&list, "ea6"), Pick::None, "nothing starts with it");
    }

    #[test]
    fn a_unique_prefix_names_its_tag_and_a_shared_one_lists_them() {
        let list = tags(&["ea6757a8090d", "ea6799b00000", "d277d11f1376"]);
        assert_eq!(pick(&list, "ea675"), Pick::One("ea6757a8090d".into()));
        assert_eq!(
            pick(&list, "ea6"),
            Pick::Several(tags(&["ea6757a8090d", "ea6799b00000"]))
        );
    }

    #[test]
    fn the_closest_tags_share_the_longest_start() {
        let list = tags(&["ea6757a8090d", "ea6799b00000", "d277d11f1376"]);
        assert_eq!(
            closest(&list, "ea67ff"),
            tags(&["ea6757a8090d", "ea6799b00000"])
        );
        assert_eq!(closest(&list, "zz"), {
            let mut all = list.clone();
            all.sort();
            all
        });
        assert!(closest(&[], "x").is_empty());
    }

    #[test]
    fn candidates_are_listed_up_to_ten() {
        let many: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        let text = list(&many);
        assert!(text.ends_with("`t09`, and 2 more"), "{text}");
    }
}
