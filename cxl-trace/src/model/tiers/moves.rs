//! Pages moving between tiers: why (the cause of a migration), which way, and per batch.

use super::*;
use std::collections::BTreeMap;

use crate::{
    model::event::{Comm, MigrateReason},
    model::hist::{new_histogram, percentiles},
    model::schema::{self, Avail, Cause},
};
use hdrhistogram::Histogram;

/// What caused a migration, for promotion/demotion breakdowns.
pub fn cause(reason: MigrateReason, comm: &Comm) -> Cause {
    match reason {
        MigrateReason::NumaMisplaced => Cause::NumaBalancing,
        MigrateReason::Demotion => {
            let c = comm.as_string();
            if c.starts_with("kswapd") {
                Cause::Kswapd
            } else if c.starts_with("khugepaged") {
                Cause::Khugepaged
            } else {
                // Direct reclaim and proactive reclaim (memory.reclaim) alike: up to 6.12 the
                // kernel counts both as pgdemote_direct, later kernels split off
                // pgdemote_proactive.
                Cause::Direct
            }
        }
        MigrateReason::MempolicyMbind => Cause::Mbind,
        MigrateReason::MemoryHotplug => Cause::Hotplug,
        other => Cause::Other(other),
    }
}

/// Direction of a move between tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// To a faster tier.
    Promotion,
    /// To a slower tier.
    Demotion,
    /// Within a tier.
    Lateral,
}

/// Direction of a move from tier `src` to tier `dst` (lower id is faster).
pub fn direction(src: u32, dst: u32) -> Direction {
    match dst.cmp(&src) {
        std::cmp::Ordering::Less => Direction::Promotion,
        std::cmp::Ordering::Greater => Direction::Demotion,
        std::cmp::Ordering::Equal => Direction::Lateral,
    }
}

/// Pages moved between tiers.
#[derive(Clone, Debug)]
pub struct TierMoves {
    /// Pages by (source tier, destination tier).
    pub pairs: BTreeMap<TierPair, u64>,
    /// Promoted pages by cause.
    pub promotions: BTreeMap<Cause, u64>,
    /// Demoted pages by cause.
    pub demotions: BTreeMap<Cause, u64>,
    /// Promoted and demoted pages by direction, cause and tier pair (a demotion's tiers may be
    /// unknown): `promotions` and `demotions` split by pair, for the exporter.
    pub flows: BTreeMap<(Direction, Cause, TierPair), u64>,
    /// Pages moved within one tier.
    pub lateral: u64,
    /// Pages of batches with no per-folio information (or tiers unknown).
    pub unattributed: u64,
    /// Batches whose folios all went between one pair of tiers.
    pub exact_batches: u64,
    /// Batches split across tier pairs in proportion to their folios.
    pub apportioned_batches: u64,
    /// Folios moved (`move_to_new_folio` returned 0).
    pub folios: u64,
    /// Folio moves that failed.
    pub folio_failures: u64,
    /// Copy time of a folio, ns.
    pub copy_latency: Histogram<u64>,
    /// Folio events whose pfns map to no known node (stale topology or a wrong vmemmap).
    pub unmapped_pfns: u64,
}

impl Default for TierMoves {
    fn default() -> Self {
        Self {
            pairs: BTreeMap::new(),
            promotions: BTreeMap::new(),
            demotions: BTreeMap::new(),
            flows: BTreeMap::new(),
            lateral: 0,
            unattributed: 0,
            exact_batches: 0,
            apportioned_batches: 0,
            folios: 0,
            folio_failures: 0,
            copy_latency: new_histogram(),
            unmapped_pfns: 0,
        }
    }
}

impl TierMoves {
    /// Adds `pages` that went from `src` to `dst` because of `cause`. Returns the direction
    /// when both tiers are known.
    pub fn add(
        &mut self,
        src: Option<u32>,
        dst: Option<u32>,
        pages: u64,
        reason: MigrateReason,
        cause: Cause,
    ) -> Option<Direction> {
        if pages == 0 {
            return None;
        }
        *self.pairs.entry((src, dst)).or_default() += pages;
        match (src, dst) {
            (Some(s), Some(d)) => {
                let dir = direction(s, d);
                match dir {
                    Direction::Promotion => *self.promotions.entry(cause).or_default() += pages,
                    Direction::Demotion => *self.demotions.entry(cause).or_default() += pages,
                    Direction::Lateral => self.lateral += pages,
                }
                if dir != Direction::Lateral {
                    *self.flows.entry((dir, cause, (src, dst))).or_default() += pages;
                }
                return Some(dir);
            }
            // A demotion goes to a slower tier by definition, even when the tiers are unknown.
            _ if reason == MigrateReason::Demotion => {
                *self.demotions.entry(cause).or_default() += pages;
                *self
                    .flows
                    .entry((Direction::Demotion, cause, (src, dst)))
                    .or_default() += pages;
            }
            _ => self.unattributed += pages,
        }
        None
    }

    /// Adds another window.
    pub fn merge(&mut self, o: &TierMoves) {
        add_counts(&mut self.pairs, &o.pairs);
        add_counts(&mut self.promotions, &o.promotions);
        add_counts(&mut self.demotions, &o.demotions);
        add_counts(&mut self.flows, &o.flows);
        self.lateral += o.lateral;
        self.unattributed += o.unattributed;
        self.exact_batches += o.exact_batches;
        self.apportioned_batches += o.apportioned_batches;
        self.folios += o.folios;
        self.folio_failures += o.folio_failures;
        let _ = self.copy_latency.add(&o.copy_latency);
        self.unmapped_pfns += o.unmapped_pfns;
    }

    /// Promoted pages.
    pub fn promoted(&self) -> u64 {
        self.promotions.values().sum()
    }

    /// Demoted pages.
    pub fn demoted(&self) -> u64 {
        self.demotions.values().sum()
    }

    /// Fills the window's `promotions`, `demotions`, `tier_pairs` and `per_folio`; `avail`
    /// says whether per-folio moves are seen at all, `copy` whether their copy time is.
    pub fn fill(&self, m: &mut schema::Migrations, avail: &Option<String>, copy: &Option<String>) {
        m.promotions = schema::Moves {
            pages: self.promoted(),
            by_cause: self.promotions.clone(),
        };
        m.demotions = schema::Moves {
            pages: self.demoted(),
            by_cause: self.demotions.clone(),
        };
        m.tier_pairs = self
            .pairs
            .iter()
            .map(|((s, d), n)| (format!("{}->{}", tier_label(*s), tier_label(*d)), *n))
            .collect();
        m.lateral_pages = self.lateral;
        m.unattributed_pages = self.unattributed;
        m.per_folio = schema::PerFolio {
            avail: Avail::from_reason(avail.as_deref()),
            folios: self.folios,
            failures: self.folio_failures,
            exact_batches: self.exact_batches,
            apportioned_batches: self.apportioned_batches,
            unmapped_pfns: self.unmapped_pfns,
            copy_ns: match copy {
                None => schema::CopyTime::Measured(percentiles(&self.copy_latency)),
                Some(r) => schema::CopyTime::Unavailable(Avail::from_reason(Some(r))),
            },
        };
    }
}

/// Successful folio moves of one batch in progress, by tier pair.
#[derive(Clone, Debug, Default)]
pub struct BatchFolios {
    /// Folios by (source tier, destination tier).
    pub pairs: BTreeMap<TierPair, u64>,
}

impl BatchFolios {
    /// Splits `pages` over the pairs: exactly when there is one pair, else in proportion to
    /// the folio counts (the remainder goes to the largest pair). Returns the split and whether
    /// it was exact.
    pub fn split(&self, pages: u64) -> (Vec<(TierPair, u64)>, bool) {
        let folios: u64 = self.pairs.values().sum();
        if folios == 0 {
            return (Vec::new(), true);
        }
        if self.pairs.len() == 1 {
            let (k, _) = self
                .pairs
                .iter()
                .next()
                .map(|(k, v)| (*k, *v))
                .unwrap_or_default();
            return (vec![(k, pages)], true);
        }
        let mut out: Vec<(TierPair, u64)> = self
            .pairs
            .iter()
            .map(|(k, n)| {
                (
                    *k,
                    (u128::from(pages) * u128::from(*n) / u128::from(folios)) as u64,
                )
            })
            .collect();
        let given: u64 = out.iter().map(|x| x.1).sum();
        if let Some(big) = out.iter_mut().max_by_key(|x| x.1) {
            big.1 += pages - given;
        }
        (out, false)
    }
}
