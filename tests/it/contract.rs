//! The backend contract suite (`envctl::backend::contract`) on the Docker engine: the same
//! functions the fake runs in the unit tests and the test swarm in `swarm::contract`.

use envctl::backend::Backend;
use envctl::backend::contract::{Case, Subject, Traits, initials};
use envctl::backend::docker::{DockerBackend, Flags};
use envctl::spec::ImageRef;

use crate::harness::{IMAGE, block_on, demo_images};

fn leg(test: &str, case: Case) {
    demo_images();
    let prefix = format!("c{}-{}", initials(test), std::process::id());
    let _guard = Guard(prefix.clone());
    block_on(async {
        let backend = connect().await;
        let image = ImageRef {
            repository: IMAGE.into(),
            tag: "latest".into(),
        };
        let image = backend.resolve_image(&image).await.expect("inspect");
        let subject = Subject {
            backend: &backend,
            prefix,
            image: image.expect("the demo image, built"),
            traits: Traits {
                volumes_at_creation: true,
            },
            before_create: None,
        };
        case(&subject).await;
    });
}

async fn connect() -> DockerBackend {
    DockerBackend::connect(&Flags::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Removes whatever a test left under its prefix, failed or not.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let prefix = format!("{}-", self.0);
        // From a thread with a runtime of its own: the test's may be unwinding.
        let _ = std::thread::spawn(move || {
            block_on(async {
                let backend = connect().await;
                let Ok(all) = envctl::lifecycle::inventory::list(&backend).await else {
                    return;
                };
                for instance in all.iter().filter(|i| i.id.starts_with(&prefix)) {
                    let _ = envctl::lifecycle::remove(&backend, instance, None).await;
                }
            })
        })
        .join();
    }
}

envctl::contract_tests!(leg);
