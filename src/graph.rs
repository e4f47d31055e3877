//! Dependency planning with petgraph: start order, waves and cycles.
//!
//! Edges point from a service to what it depends on. A wave is the set of services whose
//! dependencies all sit in earlier waves; `up` does not wait for whole waves (a service starts
//! the moment its own dependencies are ready), but waves are how `plan` shows the order.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;

/// The services of an environment in start waves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub waves: Vec<Vec<String>>,
}

/// Builds the graph of `(service, dependencies)` pairs.
fn build<'a>(
    dependencies: impl IntoIterator<Item = (&'a str, impl IntoIterator<Item = &'a str>)>,
) -> DiGraphMap<&'a str, ()> {
    let mut graph = DiGraphMap::new();
    for (service, deps) in dependencies {
        graph.add_node(service);
        for dep in deps {
            graph.add_edge(service, dep, ());
        }
    }
    graph
}

/// Every dependency cycle, each as a closed path starting and ending at its smallest service:
/// `["accounting", "proxy", "accounting"]`. Cycles are sorted, so output is deterministic.
pub fn find_cycles<'a>(
    dependencies: impl IntoIterator<Item = (&'a str, impl IntoIterator<Item = &'a str>)>,
) -> Vec<Vec<String>> {
    let graph = build(dependencies);
    let mut cycles: Vec<Vec<String>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
        .map(|scc| {
            let members: BTreeSet<&str> = scc.iter().copied().collect();
            let start = *members
                .first()
                .expect("a strongly connected component is not empty");
            shortest_cycle(&graph, &members, start)
        })
        .collect();
    cycles.sort();
    cycles
}

/// The shortest path from `start` back to itself inside one strongly connected component,
/// found breadth-first, visiting neighbours in name order.
fn shortest_cycle(
    graph: &DiGraphMap<&str, ()>,
    members: &BTreeSet<&str>,
    start: &str,
) -> Vec<String> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<&str> = graph
            .neighbors(node)
            .filter(|n| members.contains(n))
            .collect();
        next.sort_unstable();
        for n in next {
            if n == start {
                // Walk back from `node` to `start`, then read the path forwards.
                let mut path = vec![start.to_string()];
                let mut at = node;
                while at != start {
                    path.push(at.to_string());
                    at = parent[at];
                }
                path.push(start.to_string());
                path.reverse();
                return path;
            }
            if n != start && !parent.contains_key(n) {
                parent.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    unreachable!("every member of a strongly connected component lies on a cycle through start")
}

impl Plan {
    /// Orders acyclic `(service, dependencies)` pairs (a validated environment's) into waves.
    pub fn new<'a>(
        dependencies: impl IntoIterator<Item = (&'a str, impl IntoIterator<Item = &'a str>)>,
    ) -> Plan {
        Plan {
            waves: waves(dependencies),
        }
    }
}

/// Groups acyclic `(service, dependencies)` pairs into waves: a service sits one wave after its
/// latest dependency. Dependencies that are not themselves listed are ignored, so a partial
/// environment (some containers already removed) still orders.
pub fn waves<'a>(
    dependencies: impl IntoIterator<Item = (&'a str, impl IntoIterator<Item = &'a str>)>,
) -> Vec<Vec<String>> {
    let listed: Vec<(&str, Vec<&str>)> = dependencies
        .into_iter()
        .map(|(s, deps)| (s, deps.into_iter().collect()))
        .collect();
    let names: BTreeSet<&str> = listed.iter().map(|(s, _)| *s).collect();
    let graph = build(
        listed
            .iter()
            .map(|(s, deps)| (*s, deps.iter().copied().filter(|d| names.contains(d)))),
    );
    // Reverse topological order visits dependencies before their dependents. Labels edited by
    // hand could form a cycle: then everything is one wave rather than nothing.
    let Ok(order) = petgraph::algo::toposort(&graph, None) else {
        return vec![names.iter().map(|n| n.to_string()).collect()];
    };
    let mut wave_of: BTreeMap<&str, usize> = BTreeMap::new();
    for &name in order.iter().rev() {
        let wave = graph
            .neighbors(name)
            .map(|dep| wave_of.get(dep).map_or(0, |w| w + 1))
            .max()
            .unwrap_or(0);
        wave_of.insert(name, wave);
    }
    let depth = wave_of.values().max().map_or(0, |d| d + 1);
    let mut waves = vec![Vec::new(); depth];
    for (name, wave) in wave_of {
        waves[wave].push(name.to_string());
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycles(edges: &[(&'static str, &[&'static str])]) -> Vec<String> {
        find_cycles(edges.iter().map(|(s, d)| (*s, d.iter().copied())))
            .into_iter()
            .map(|c| c.join(" -> "))
            .collect()
    }

    #[test]
    fn names_the_whole_cycle() {
        assert_eq!(
            cycles(&[
                ("accounting", &["proxy"]),
                ("proxy", &["accounting"]),
                ("db", &[])
            ]),
            ["accounting -> proxy -> accounting"]
        );
        assert_eq!(
            cycles(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]),
            ["a -> b -> c -> a"]
        );
        assert_eq!(cycles(&[("a", &["a"])]), ["a -> a"]);
    }

    #[test]
    fn waves_follow_the_longest_dependency_chain() {
        let deps: [(&str, &[&str]); 4] = [
            ("accounting", &["oracle-xe", "activemq"]),
            ("activemq", &[]),
            ("oracle-xe", &[]),
            ("proxy", &["oracle-xe", "accounting", "activemq"]),
        ];
        assert_eq!(
            waves(deps.iter().map(|(s, d)| (*s, d.iter().copied()))),
            [
                vec!["activemq", "oracle-xe"],
                vec!["accounting"],
                vec!["proxy"]
            ]
        );
        let partial: [(&str, &[&str]); 1] = [("proxy", &["accounting"])];
        assert_eq!(
            waves(partial.iter().map(|(s, d)| (*s, d.iter().copied()))),
            [vec!["proxy"]]
        );
    }

    #[test]
    fn reports_each_cycle_once() {
        assert_eq!(
            cycles(&[("a", &["b"]), ("b", &["a"]), ("x", &["y"]), ("y", &["x"])]),
            ["a -> b -> a", "x -> y -> x"]
        );
        assert!(cycles(&[("a", &["b"]), ("b", &[])]).is_empty());
    }
}
