//! The plan cut into chains (one per connection and schema) and segments (cut where a step
//! waits for another chain).

use bfm_core::Step;
use std::collections::HashMap;

pub(crate) struct Segment {
    pub(crate) steps: Vec<usize>,
    /// Steps of other chains that must have succeeded first.
    pub(crate) waits_for: Vec<usize>,
}

pub(crate) struct Chain {
    pub(crate) connection: String,
    pub(crate) schema: String,
    pub(crate) segments: Vec<Segment>,
}

impl Chain {
    /// Every step of the chain from segment `from` on, in order.
    pub(crate) fn steps_from(&self, from: usize) -> Vec<usize> {
        self.segments[from..].iter().flat_map(|s| s.steps.iter().copied()).collect()
    }
}

/// Chains in the order their first step appears in the plan; steps keep plan order.
pub(crate) fn build_chains(steps: &[Step]) -> Vec<Chain> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        let key = (s.migration.connection.clone(), s.schema.clone());
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(i);
    }
    let chain_of: HashMap<usize, usize> = order.iter().enumerate().flat_map(|(c, k)| by_key[k].iter().map(move |&i| (i, c))).collect();
    order
        .iter()
        .enumerate()
        .map(|(c, key)| {
            let mut segments: Vec<Segment> = Vec::new();
            for &i in &by_key[key] {
                let external: Vec<usize> = steps[i].after.iter().copied().filter(|a| chain_of.get(a) != Some(&c)).collect();
                match segments.last_mut() {
                    Some(seg) if external.is_empty() => seg.steps.push(i),
                    _ => segments.push(Segment { steps: vec![i], waits_for: external }),
                }
            }
            Chain { connection: key.0.clone(), schema: key.1.clone(), segments }
        })
        .collect()
}
