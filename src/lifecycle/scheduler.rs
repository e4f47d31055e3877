//! Starts services the moment their own dependencies are ready, not wave by wave.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

/// Runs `start` for every service once all of its dependencies' `start` futures have finished,
/// as many at once as the graph allows. Returns the first failure with its service; the other
/// starts in flight are dropped (cancelled) then. `dependencies` must be acyclic; dependencies
/// that are not listed count as ready.
pub async fn run<F, Fut, E>(
    dependencies: &BTreeMap<String, BTreeSet<String>>,
    start: F,
) -> Result<(), (String, E)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = dependencies
        .iter()
        .map(|(service, deps)| {
            let pending = deps
                .iter()
                .map(String::as_str)
                .filter(|d| dependencies.contains_key(*d))
                .collect();
            (service.as_str(), pending)
        })
        .collect();
    let mut running = FuturesUnordered::new();
    loop {
        let unblocked: Vec<&str> = waiting
            .iter()
            .filter(|(_, pending)| pending.is_empty())
            .map(|(service, _)| *service)
            .collect();
        for service in unblocked {
            waiting.remove(service);
            let future = start(service.to_string());
            running.push(async move { (service, future.await) });
        }
        match running.next().await {
            Some((service, Ok(()))) => {
                for pending in waiting.values_mut() {
                    pending.remove(service);
                }
            }
            Some((service, Err(error))) => return Err((service.to_string(), error)),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    fn deps(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(s, d)| (s.to_string(), d.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    /// A fake engine's start: each service takes its delay, and the start times are recorded.
    async fn simulate(
        edges: &[(&str, &[&str])],
        delays: &[(&str, u64)],
        fail: Option<&str>,
    ) -> (Result<(), (String, String)>, BTreeMap<String, u128>) {
        let delays: BTreeMap<String, u64> =
            delays.iter().map(|(s, d)| (s.to_string(), *d)).collect();
        let started = Arc::new(Mutex::new(BTreeMap::new()));
        let t0 = Instant::now();
        let result = run(&deps(edges), |service| {
            let started = started.clone();
            let delay = delays[&service];
            let fail = fail == Some(service.as_str());
            async move {
                started
                    .lock()
                    .unwrap()
                    .insert(service.clone(), t0.elapsed().as_millis());
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if fail {
                    Err(format!("{service} exited"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let started = started.lock().unwrap().clone();
        (result, started)
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_starts_when_its_own_dependencies_are_ready() {
        // b waits only for the fast a; c waits for the slow d. b must not wait for d.
        let (result, started) = simulate(
            &[("a", &[]), ("d", &[]), ("b", &["a"]), ("c", &["d"])],
            &[("a", 100), ("d", 3000), ("b", 100), ("c", 100)],
            None,
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(started["a"], 0);
        assert_eq!(started["d"], 0);
        assert_eq!(started["b"], 100);
        assert_eq!(started["c"], 3000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_seed_environment_starts_along_its_critical_path() {
        let (result, started) = simulate(
            &[
                ("oracle-xe", &[]),
                ("activemq", &[]),
                ("accounting", &["oracle-xe", "activemq"]),
                ("proxy", &["oracle-xe", "accounting", "activemq"]),
            ],
            &[
                ("oracle-xe", 3000),
                ("activemq", 2000),
                ("accounting", 2000),
                ("proxy", 1000),
            ],
            None,
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(started["accounting"], 3000);
        assert_eq!(started["proxy"], 5000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_failure_stops_the_start_and_names_the_service() {
        let (result, started) = simulate(
            &[("a", &[]), ("b", &["a"]), ("c", &[])],
            &[("a", 100), ("b", 100), ("c", 5000)],
            Some("a"),
        )
        .await;
        assert_eq!(result, Err(("a".to_string(), "a exited".to_string())));
        assert!(
            !started.contains_key("b"),
            "a dependent of a failed service never starts"
        );
    }
}
