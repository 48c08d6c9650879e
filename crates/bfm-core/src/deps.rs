//! Dependencies between migrations and the ordering of a dependency graph.

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How a structured dependency names its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    #[default]
    Name,
    Version,
}

impl TargetType {
    pub fn parse(s: &str) -> Option<TargetType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "name" => Some(TargetType::Name),
            "version" => Some(TargetType::Version),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Name => "name",
            TargetType::Version => "version",
        }
    }
}

/// A structured dependency (BfM's `StructuredDependencies` entry).
///
/// A migration `t` is a target when the connection (if given) equals `t`'s connection and the
/// name or version equals `target`. If `schema` is given and `t` has a declared schema, they must
/// be equal; if `t` is per-tenant, `schema` names the schema in which `t` must have run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub target: String,
    #[serde(default)]
    pub target_type: TargetType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_schema: Option<String>,
}

impl Dependency {
    /// A dependency by name only (BfM's `Dependencies: []string{…}`).
    pub fn by_name(name: &str) -> Dependency {
        Dependency { target: name.to_string(), ..Default::default() }
    }

    /// Human-readable form used in messages: `connection=core, schema=core, target=x, type=name`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.connection {
            parts.push(format!("connection={c}"));
        }
        if let Some(s) = &self.schema {
            parts.push(format!("schema={s}"));
        }
        parts.push(format!("target={}", self.target));
        if self.target_type == TargetType::Version {
            parts.push("type=version".into());
        }
        parts.join(", ")
    }
}

/// A directed graph over `0..n` where an edge `a → b` means "a must come before b".
#[derive(Debug, Clone)]
pub struct Graph {
    succ: Vec<Vec<usize>>,
    indegree: Vec<usize>,
}

impl Graph {
    pub fn new(n: usize) -> Graph {
        Graph { succ: vec![Vec::new(); n], indegree: vec![0; n] }
    }

    pub fn len(&self) -> usize {
        self.succ.len()
    }

    pub fn is_empty(&self) -> bool {
        self.succ.is_empty()
    }

    /// `before` must run before `after`. Self-loops and duplicate edges are ignored.
    pub fn add_edge(&mut self, before: usize, after: usize) {
        if before != after && !self.succ[before].contains(&after) {
            self.succ[before].push(after);
            self.indegree[after] += 1;
        }
    }

    pub fn successors(&self, n: usize) -> &[usize] {
        &self.succ[n]
    }

    /// A cycle, as the list of nodes along it with the first node repeated at the end.
    pub fn find_cycle(&self) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let n = self.len();
        let mut mark = vec![Mark::New; n];
        for root in 0..n {
            if mark[root] != Mark::New {
                continue;
            }
            // Iterative DFS with an explicit path.
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&s) = self.succ[node].get(*next) {
                    *next += 1;
                    match mark[s] {
                        Mark::New => {
                            mark[s] = Mark::Active;
                            stack.push((s, 0));
                        }
                        Mark::Active => {
                            let from = stack.iter().position(|(x, _)| *x == s).unwrap_or(0);
                            let mut cycle: Vec<usize> = stack[from..].iter().map(|(x, _)| *x).collect();
                            cycle.push(s);
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Topological order; among the nodes that are ready, the one with the smallest key runs
    /// first (lowest version, then a stable tie-break chosen by the caller). `None` if there is a
    /// cycle.
    pub fn order_by<K: Ord>(&self, key: impl Fn(usize) -> K) -> Option<Vec<usize>> {
        let mut indegree = self.indegree.clone();
        let mut ready: BinaryHeap<Reverse<(K, usize)>> =
            (0..self.len()).filter(|&i| indegree[i] == 0).map(|i| Reverse((key(i), i))).collect();
        let mut out = Vec::with_capacity(self.len());
        while let Some(Reverse((_, node))) = ready.pop() {
            out.push(node);
            for &s in &self.succ[node] {
                indegree[s] -= 1;
                if indegree[s] == 0 {
                    ready.push(Reverse((key(s), s)));
                }
            }
        }
        (out.len() == self.len()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_key_first_among_ready() {
        let mut g = Graph::new(4);
        // 3 → 0: node 0 must wait for node 3 although its key is lower.
        g.add_edge(3, 0);
        let order = g.order_by(|i| i).unwrap();
        assert_eq!(order, vec![1, 2, 3, 0]);
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        let mut g = Graph::new(4);
        g.add_edge(0, 1);
        g.add_edge(1, 2);
        g.add_edge(2, 1);
        g.add_edge(2, 3);
        let c = g.find_cycle().unwrap();
        assert_eq!(c.first(), c.last());
        assert!(c.contains(&1) && c.contains(&2) && !c.contains(&0));
        assert!(g.order_by(|i| i).is_none());
    }
}
