//! An in-memory [`Environments`] for unit tests: scripted start times, a call log.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::create::Resolution;
use super::environments::{Create, Environments, Flush, RoutedEnvironment, ServiceView};
use crate::lifecycle::State;

#[derive(Default)]
pub struct Fake {
    pub environments: Mutex<Vec<RoutedEnvironment>>,
    /// How long a start takes before the environment is ready.
    pub start_takes: Mutex<Duration>,
    pub calls: Mutex<Vec<String>>,
    pub flushes: Mutex<Vec<Flush>>,
    /// How long the next listings take, one entry a listing (none: at once).
    pub list_takes: Mutex<std::collections::VecDeque<Duration>>,
    /// What refs mean, by environment file (none: no such file).
    pub files: Mutex<std::collections::BTreeMap<String, Vec<(String, String)>>>,
    /// Each environment's services, as its page shows them.
    pub services: Mutex<std::collections::BTreeMap<String, Vec<ServiceView>>>,
}

impl Fake {
    pub fn new(environments: Vec<RoutedEnvironment>) -> Fake {
        Fake {
            environments: Mutex::new(environments),
            ..Fake::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn set(&self, id: &str, change: impl FnOnce(&mut RoutedEnvironment)) -> Result<(), String> {
        let mut environments = self.environments.lock().unwrap();
        let environment = environments
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| format!("no environment `{id}`"))?;
        change(environment);
        Ok(())
    }
}

#[async_trait]
impl Environments for Fake {
    async fn list(&self) -> Result<Vec<RoutedEnvironment>, String> {
        // What is there when the listing starts, answered when it ends.
        let listed = self.environments.lock().unwrap().clone();
        let takes = self.list_takes.lock().unwrap().pop_front();
        if let Some(takes) = takes {
            tokio::time::sleep(takes).await;
        }
        Ok(listed)
    }

    async fn start(&self, id: &str, _why: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("start {id}"));
        let takes = *self.start_takes.lock().unwrap();
        tokio::time::sleep(takes).await;
        self.set(id, |e| {
            e.state = State::Ready;
            e.stopped_for_errors = false;
            if let Ok(entry) = &mut e.entry {
                entry.address.get_or_insert(([127, 0, 0, 1], 40999).into());
            }
        })
    }

    async fn stop(&self, id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("stop {id}"));
        self.set(id, |e| e.state = State::Stopped)
    }

    async fn set_pinned(&self, id: &str, pinned: bool) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("pin {id} {pinned}"));
        self.set(id, |e| e.pinned = pinned)
    }

    async fn touch(&self, id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("touch {id}"));
        Ok(())
    }

    async fn down(&self, id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("down {id}"));
        self.environments.lock().unwrap().retain(|e| e.id != id);
        Ok(())
    }

    async fn services(&self, id: &str, lines: u64) -> Result<Vec<ServiceView>, String> {
        let services = self.services.lock().unwrap();
        let mut listed = services
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no environment `{id}`"))?;
        for service in &mut listed {
            let keep = service.log.len().saturating_sub(lines as usize);
            service.log.drain(..keep);
        }
        Ok(listed)
    }

    fn changes(&self) -> BoxStream<'static, ()> {
        futures_util::stream::pending().boxed()
    }

    async fn flush(&self, flush: Flush) -> Result<(), String> {
        self.flushes.lock().unwrap().push(flush);
        Ok(())
    }

    async fn resolve(
        &self,
        environment: &str,
        reference: &str,
    ) -> Result<Option<Resolution>, String> {
        let files = self.files.lock().unwrap();
        let Some(services) = files.get(environment) else {
            return Ok(None);
        };
        let tags = services
            .iter()
            .map(|(service, tag)| (service.clone(), vec![tag.clone()]))
            .collect();
        // The services' names stand for their images.
        Ok(Some(match super::create::resolve(&tags, reference) {
            Resolution::None { closest, .. } => Resolution::None {
                closest,
                images: services.iter().map(|(s, _)| s.clone()).collect(),
            },
            other => other,
        }))
    }

    async fn create(&self, create: Create) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("create {}", create.id));
        let takes = *self.start_takes.lock().unwrap();
        tokio::time::sleep(takes).await;
        let mut environment =
            super::routing::tests::environment(&create.id, &create.environment, &[], 1);
        environment.refs = create
            .tags
            .iter()
            .map(|(s, t)| format!("{s}@{t}"))
            .collect();
        environment.owner = create.owner;
        self.environments.lock().unwrap().push(environment);
        Ok(())
    }
}
