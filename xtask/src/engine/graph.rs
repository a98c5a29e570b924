//! The dependency graph (petgraph): deterministic topological order, and a readable error
//! naming the cycle when there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::resource::ResourceId;

/// A dependency cycle, listed in order: each resource depends on the next, and the last on
/// the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CycleError {
    pub cycle: Vec<ResourceId>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<&str> = self.cycle.iter().chain(self.cycle.first()).map(ResourceId::as_str).collect();
        write!(f, "dependency cycle: {}", path.join(" -> "))
    }
}

/// A DAG of resources: an edge runs from a dependency to its dependent.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<ResourceId, ()>,
    index: BTreeMap<ResourceId, NodeIndex>,
}

impl Dag {
    /// Builds the graph from each node's dependencies. Dependencies that are not nodes are
    /// ignored (the caller decides whether that is an error). Fails on a cycle.
    pub fn new(nodes: impl IntoIterator<Item = (ResourceId, BTreeSet<ResourceId>)>) -> Result<Self, CycleError> {
        let nodes: BTreeMap<ResourceId, BTreeSet<ResourceId>> = nodes.into_iter().collect();
        let mut graph = DiGraph::new();
        let index: BTreeMap<ResourceId, NodeIndex> =
            nodes.keys().map(|id| (id.clone(), graph.add_node(id.clone()))).collect();
        for (id, dependencies) in &nodes {
            for dependency in dependencies {
                if let Some(&from) = index.get(dependency) {
                    graph.add_edge(from, index[id], ());
                }
            }
        }
        let dag = Self { graph, index };
        dag.check_acyclic()?;
        Ok(dag)
    }

    fn check_acyclic(&self) -> Result<(), CycleError> {
        for component in tarjan_scc(&self.graph) {
            let self_loop = component.len() == 1 && self.graph.contains_edge(component[0], component[0]);
            if component.len() > 1 || self_loop {
                return Err(CycleError { cycle: self.cycle_within(&component) });
            }
        }
        Ok(())
    }

    /// One cycle through the strongly connected component, starting at its smallest id and
    /// following the smallest dependency each time, so the message is deterministic.
    fn cycle_within(&self, component: &[NodeIndex]) -> Vec<ResourceId> {
        let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
        let start = *component.iter().min_by(|a, b| self.graph[**a].cmp(&self.graph[**b])).expect("non-empty");
        let mut path = vec![start];
        let mut current = start;
        loop {
            // Follow edges backwards: from a dependent to what it depends on.
            let next = self
                .graph
                .neighbors_directed(current, petgraph::Direction::Incoming)
                .filter(|n| members.contains(n))
                .min_by(|a, b| self.graph[*a].cmp(&self.graph[*b]))
                .expect("every node of a cycle has a predecessor in it");
            if let Some(position) = path.iter().position(|n| *n == next) {
                return path[position..].iter().map(|n| self.graph[*n].clone()).collect();
            }
            path.push(next);
            current = next;
        }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn ids(&self) -> impl Iterator<Item = &ResourceId> {
        self.index.keys()
    }

    /// What `id` depends on, within the graph.
    pub fn dependencies(&self, id: &ResourceId) -> BTreeSet<ResourceId> {
        self.neighbors(id, petgraph::Direction::Incoming)
    }

    /// What depends on `id`, within the graph.
    pub fn dependents(&self, id: &ResourceId) -> BTreeSet<ResourceId> {
        self.neighbors(id, petgraph::Direction::Outgoing)
    }

    fn neighbors(&self, id: &ResourceId, direction: petgraph::Direction) -> BTreeSet<ResourceId> {
        self.index
            .get(id)
            .map(|&node| self.graph.neighbors_directed(node, direction).map(|n| self.graph[n].clone()).collect())
            .unwrap_or_default()
    }

    /// Every node after all of its dependencies; among nodes that are ready together, in
    /// id order (Kahn's algorithm with an ordered ready set).
    pub fn topological_order(&self) -> Vec<ResourceId> {
        let mut remaining: BTreeMap<&ResourceId, usize> = self
            .index
            .iter()
            .map(|(id, &node)| (id, self.graph.neighbors_directed(node, petgraph::Direction::Incoming).count()))
            .collect();
        let mut ready: BTreeSet<&ResourceId> = remaining.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(id) = ready.pop_first() {
            order.push(id.clone());
            for dependent in self.graph.neighbors_directed(self.index[id], petgraph::Direction::Outgoing) {
                let dependent = &self.graph[dependent];
                let count = remaining.get_mut(dependent).expect("every node is counted");
                *count -= 1;
                if *count == 0 {
                    ready.insert(self.index.get_key_value(dependent).expect("node is indexed").0);
                }
            }
        }
        order
    }

    /// The longest chain of dependencies, counted in nodes: the critical path.
    pub fn depth(&self) -> usize {
        let mut depth: BTreeMap<ResourceId, usize> = BTreeMap::new();
        for id in self.topological_order() {
            let d = self.dependencies(&id).iter().map(|dependency| depth[dependency]).max().unwrap_or(0) + 1;
            depth.insert(id, d);
        }
        depth.into_values().max().unwrap_or(0)
    }
}

/// The nodes in dependency order; see [`Dag::topological_order`].
pub fn topological_order(
    nodes: impl IntoIterator<Item = (ResourceId, BTreeSet<ResourceId>)>,
) -> Result<Vec<ResourceId>, CycleError> {
    Ok(Dag::new(nodes)?.topological_order())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, dependencies: &[&str]) -> (ResourceId, BTreeSet<ResourceId>) {
        (ResourceId::new(id), dependencies.iter().map(|d| ResourceId::new(*d)).collect())
    }

    #[test]
    fn order_puts_dependencies_first_and_ties_in_id_order() {
        let order = topological_order([
            node("route", &["integration", "api"]),
            node("integration", &["api", "function"]),
            node("function", &["role"]),
            node("role", &[]),
            node("api", &[]),
        ])
        .unwrap();
        let order: Vec<&str> = order.iter().map(ResourceId::as_str).collect();
        assert_eq!(order, ["api", "role", "function", "integration", "route"]);
    }

    #[test]
    fn a_cycle_is_reported_by_name() {
        let error =
            topological_order([node("a", &["c"]), node("b", &["a"]), node("c", &["b"]), node("d", &[])]).unwrap_err();
        assert_eq!(error.to_string(), "dependency cycle: a -> c -> b -> a");
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let error = topological_order([node("a", &["a"])]).unwrap_err();
        assert_eq!(error.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn depth_is_the_longest_chain() {
        let dag = Dag::new([node("a", &[]), node("b", &["a"]), node("c", &["b"]), node("d", &["a"])]).unwrap();
        assert_eq!(dag.depth(), 3);
    }
}
