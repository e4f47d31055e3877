//! The backend contract suite (`envctl::backend::contract`) on the test swarm: the same
//! functions the fake and the Docker engine run.

use envctl::backend::Backend;
use envctl::backend::bollard::connect::Origin;
use envctl::backend::contract::{Case, Subject, Traits, initials};
use envctl::backend::swarm::Swarm;
use envctl::spec::ImageRef;

use super::cluster::{TestSwarm, swarm};
use crate::harness::block_on;

fn leg(test: &str, case: Case) {
    let swarm = swarm();
    let prefix = format!("sc{}-{}", initials(test), std::process::id());
    let _guard = Guard(swarm, prefix.clone());
    block_on(async {
        let backend = connect(swarm).await;
        let reference = swarm.image("envctl-demo/oracle-xe");
        let (repository, tag) = reference.rsplit_once(':').expect("repository:tag");
        let image = ImageRef {
            repository: repository.into(),
            tag: tag.into(),
        };
        let image = backend.resolve_image(&image).await.expect("resolve");
        let subject = Subject {
            backend: &backend,
            prefix,
            image: image.expect("the demo image, in the swarm's registry"),
            // A swarm creates a volume on the node that first mounts it.
            traits: Traits {
                volumes_at_creation: false,
            },
            before_create: None,
        };
        case(&subject).await;
    });
}

async fn connect(swarm: &TestSwarm) -> Swarm {
    Swarm::connect(&swarm.manager, &Origin::DockerHost)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Removes whatever a test left under its prefix, failed or not.
struct Guard(&'static TestSwarm, String);

impl Drop for Guard {
    fn drop(&mut self) {
        let (swarm, prefix) = (self.0, format!("{}-", self.1));
        // From a thread with a runtime of its own: the test's may be unwinding.
        let _ = std::thread::spawn(move || {
            block_on(async {
                let backend = connect(swarm).await;
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
