//! A backend that notes what it removed, so that a removal cut short (an engine that stopped
//! answering, a second interrupt) can say what went and what is left.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use super::teardown::{self, Cleanup};
use crate::backend::*;
use crate::spec::ImageRef;

/// `backend`, with every removal it carried out noted.
pub struct Recorded<'a> {
    pub backend: &'a dyn Backend,
    /// Services, isolations and volumes, by the names the listing gave.
    removed: Mutex<Vec<Resource>>,
    /// Markers, by id and kind: a lease's name carries its expiry.
    cleared: Mutex<Vec<(String, MarkerKind)>>,
    /// What each environment had in any listing, in the order first seen: a removal lists
    /// again after removing some.
    listed: Mutex<BTreeMap<String, Vec<Resource>>>,
}

impl<'a> Recorded<'a> {
    pub fn new(backend: &'a dyn Backend) -> Recorded<'a> {
        Recorded {
            backend,
            removed: Mutex::default(),
            cleared: Mutex::default(),
            listed: Mutex::default(),
        }
    }

    fn note<T>(&self, kind: ResourceKind, name: &str, result: Result<T>) -> Result<T> {
        if result.is_ok() {
            let resource = Resource::new(self.info().kind, kind, name);
            self.removed.lock().expect("removed lock").push(resource);
        }
        result
    }

    fn note_marker(&self, id: &str, kind: MarkerKind, result: Result<()>) -> Result<()> {
        if result.is_ok() {
            let mut cleared = self.cleared.lock().expect("cleared lock");
            cleared.push((id.to_string(), kind));
        }
        result
    }

    /// What of environment `id` is gone and what is left, as its listings knew it; `None`
    /// when it was never listed.
    pub fn cleanup(&self, id: &str) -> Option<Cleanup> {
        let listed = self.listed.lock().expect("listed lock");
        let expected = listed.get(id)?;
        let removed = self.removed.lock().expect("removed lock");
        let cleared = self.cleared.lock().expect("cleared lock");
        let gone = |r: &Resource| match r.kind {
            ResourceKind::Marker(kind) => cleared.contains(&(id.to_string(), kind)),
            _ => removed.contains(r),
        };
        let (gone, left) = expected.iter().cloned().partition(gone);
        Some(Cleanup {
            id: Some(id.to_string()),
            removed: gone,
            left,
            unanswered: Vec::new(),
            cause: None,
        })
    }
}

#[async_trait]
impl Backend for Recorded<'_> {
    fn info(&self) -> &BackendInfo {
        self.backend.info()
    }
    fn reach(&self) -> &crate::reach::Reachability {
        self.backend.reach()
    }
    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }
    async fn cannot_probe_unpublished(&self) -> Option<String> {
        self.backend.cannot_probe_unpublished().await
    }
    async fn resolve_image(&self, image: &ImageRef) -> Result<Option<ResolvedImage>> {
        self.backend.resolve_image(image).await
    }
    async fn image_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.backend.image_tags(repository).await
    }
    async fn insecure_registries(&self) -> Result<crate::registry::Insecure> {
        self.backend.insecure_registries().await
    }
    async fn fetch_image(
        &self,
        image: &ImageRef,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<()> {
        self.backend.fetch_image(image, on_progress).await
    }
    async fn build_image(&self, context: Vec<u8>, dockerfile: &str, tag: &ImageRef) -> Result<()> {
        self.backend.build_image(context, dockerfile, tag).await
    }
    async fn claim(&self, metadata: &Metadata) -> Result<()> {
        self.backend.claim(metadata).await
    }
    async fn create_isolation(&self, metadata: &Metadata) -> Result<IsolationRef> {
        self.backend.create_isolation(metadata).await
    }
    async fn create_volume(&self, metadata: &Metadata, volume: &VolumeSpec) -> Result<VolumeRef> {
        self.backend.create_volume(metadata, volume).await
    }
    async fn create_service(
        &self,
        isolation: &IsolationRef,
        spec: &ServiceSpec,
    ) -> Result<ServiceRef> {
        self.backend.create_service(isolation, spec).await
    }
    async fn start_service(&self, service: &ServiceRef) -> Result<()> {
        self.backend.start_service(service).await
    }
    async fn wait_exit(&self, service: &ServiceRef) -> Result<i64> {
        self.backend.wait_exit(service).await
    }
    async fn status(&self, service: &ServiceRef) -> Result<ServiceStatus> {
        self.backend.status(service).await
    }
    fn changes(&self) -> BoxStream<'static, Result<()>> {
        self.backend.changes()
    }
    fn logs(
        &self,
        service: &ServiceRef,
        options: LogOptions,
    ) -> BoxStream<'static, Result<LogLine>> {
        self.backend.logs(service, options)
    }
    async fn exec(&self, service: &ServiceRef, command: &[String]) -> Result<ExecOutput> {
        self.backend.exec(service, command).await
    }
    async fn memory(&self, service: &ServiceRef) -> Result<Option<u64>> {
        self.backend.memory(service).await
    }
    async fn traffic(&self, service: &ServiceRef) -> Result<Traffic> {
        self.backend.traffic(service).await
    }
    async fn pause_service(&self, service: &ServiceRef) -> Result<()> {
        self.backend.pause_service(service).await
    }
    async fn resume_service(&self, service: &ServiceRef) -> Result<()> {
        self.backend.resume_service(service).await
    }
    async fn stop_service(&self, service: &ServiceRef, grace: Duration) -> Result<()> {
        self.backend.stop_service(service, grace).await
    }
    async fn remove_service(&self, service: &ServiceRef, grace: Option<Duration>) -> Result<()> {
        let result = self.backend.remove_service(service, grace).await;
        self.note(ResourceKind::Service, &service.name, result)
    }
    async fn put_aside(&self, service: &ServiceRef) -> Result<Aside> {
        self.backend.put_aside(service).await
    }
    async fn restore_aside(
        &self,
        aside: &ServiceRef,
        address: Option<IpAddr>,
    ) -> Result<ServiceRef> {
        self.backend.restore_aside(aside, address).await
    }
    async fn list(&self, selector: &Selector) -> Result<Vec<EnvironmentRecord>> {
        let records = self.backend.list(selector).await?;
        let mut listed = self.listed.lock().expect("listed lock");
        for record in &records {
            let known = listed.entry(record.id.clone()).or_default();
            for resource in teardown::resources(record, self.info().kind) {
                if !known.contains(&resource) {
                    known.push(resource);
                }
            }
        }
        Ok(records)
    }
    async fn set_marker(&self, metadata: &Metadata, marker: Marker) -> Result<()> {
        self.backend.set_marker(metadata, marker).await
    }
    async fn clear_marker(&self, id: &str, kind: MarkerKind) -> Result<()> {
        let result = self.backend.clear_marker(id, kind).await;
        self.note_marker(id, kind, result)
    }
    async fn clear_update_marker(&self, id: &str, run: &str) -> Result<()> {
        let result = self.backend.clear_update_marker(id, run).await;
        self.note_marker(id, MarkerKind::Update, result)
    }
    async fn clear_create_marker(&self, id: &str, run: &str) -> Result<()> {
        let result = self.backend.clear_create_marker(id, run).await;
        self.note_marker(id, MarkerKind::Create, result)
    }
    async fn remove_isolation(&self, isolation: &IsolationRef) -> Result<()> {
        let result = self.backend.remove_isolation(isolation).await;
        self.note(ResourceKind::Isolation, &isolation.name, result)
    }
    async fn remove_volume(&self, volume: &VolumeRef) -> Result<()> {
        let result = self.backend.remove_volume(volume).await;
        self.note(ResourceKind::Volume, &volume.native, result)
    }
    async fn release(&self, id: &str) -> Result<()> {
        let result = self.backend.release(id).await;
        self.note_marker(id, MarkerKind::Anchor, result)
    }
    async fn admission(&self) -> Result<Admission> {
        self.backend.admission().await
    }
    async fn admission_view(&self) -> Result<(Admission, Vec<EnvironmentRecord>)> {
        self.backend.admission_view().await
    }
    async fn nodes_memory(&self) -> Result<Vec<NodeMemory>> {
        self.backend.nodes_memory().await
    }
    async fn set_capacity(&self, capacity: Option<&Capacity>) -> Result<()> {
        self.backend.set_capacity(capacity).await
    }
    async fn enqueue(&self, waiter: &Waiter, until: DateTime<Utc>) -> Result<String> {
        self.backend.enqueue(waiter, until).await
    }
    async fn renew_entry(&self, native: &str, waiter: &Waiter, until: DateTime<Utc>) -> Result<()> {
        self.backend.renew_entry(native, waiter, until).await
    }
    async fn dequeue(&self, native: &str) -> Result<()> {
        self.backend.dequeue(native).await
    }
    async fn claim_fill(&self, filler: &Filler, until: DateTime<Utc>) -> Result<String> {
        self.backend.claim_fill(filler, until).await
    }
    async fn fill_claims(&self) -> Result<Vec<Filling>> {
        self.backend.fill_claims().await
    }
    async fn renew_fill(&self, native: &str, filler: &Filler, until: DateTime<Utc>) -> Result<()> {
        self.backend.renew_fill(native, filler, until).await
    }
    async fn release_fill(&self, native: &str) -> Result<()> {
        self.backend.release_fill(native).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::fake::{Fake, Fault};
    use crate::lifecycle::{Bounded, up};
    use crate::signals::Signals;

    #[tokio::test(start_paused = true)]
    async fn a_removal_cut_short_by_a_hung_engine_says_what_went_and_what_is_left() {
        let fake = Fake::new();
        fake.add_image(ResolvedImage {
            reference: ImageRef {
                repository: "shop/db".into(),
                tag: "1".into(),
            },
            digest: None,
            healthcheck: None,
        });
        let yaml = "name: shop\nservices:\n  db:\n    image: shop/db\n    tag: '1'\n";
        let environment = crate::spec::parse(std::path::Path::new("shop.yaml"), yaml, &|_| None)
            .expect("a valid environment");
        let (signals, _sender) = Signals::manual();
        let options = super::super::on_fake::options(Some("x"), Duration::from_secs(60));
        let quiet: super::super::Progress = Arc::new(|_, _| {});
        let outcome = up(&fake, &environment, &options, &quiet, &signals, &|_| {}).await;
        outcome.result.expect("started");
        fake.fault("remove_isolation", "*", Fault::Hang);
        let bounded = Bounded {
            backend: &fake,
            deadline: None,
            per_call: Some(Duration::from_secs(30)),
            signals: &signals,
        };
        let recorded = Recorded::new(&bounded);
        let error = teardown::down(&recorded, &["x".to_string()], None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("stopped answering"), "{error}");
        let cleanup = recorded.cleanup("x").expect("listed");
        let text = cleanup.to_string();
        let left = format!(
            "removed 1 container of environment `x`; left `{}`, `{}`, network `",
            crate::naming::ready_name("x"),
            crate::naming::anchor_name("x")
        );
        assert!(text.starts_with(&left), "{text}");
        assert!(
            text.ends_with("hint: `envctl down x` removes the rest"),
            "{text}"
        );
        assert!(recorded.cleanup("y").is_none());
    }
}
