//! Background maintenance: due status transitions, segment retention and removal of
//! closed shards that expired entirely.

use super::types::*;
use super::{Engine, StreamState};
use crate::error::Result;

impl Engine {
    /// One maintenance pass: completes due status transitions, deletes segments whose
    /// records all expired, and removes closed shards that expired entirely. A background
    /// thread runs it every [`EngineConfig::maintenance_interval_ms`](super::EngineConfig);
    /// call it directly when driving time with a manual clock.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport> {
        let before = self.streams_snapshot().len();
        self.enter()?;
        self.advance()?;
        let mut report = MaintenanceReport {
            streams_deleted: before.saturating_sub(self.streams_snapshot().len()),
            ..MaintenanceReport::default()
        };
        let now = self.now();
        for state in self.streams_snapshot().values() {
            let (cutoff, shards, expired) = {
                let view = state.read();
                let cutoff = view.cutoff_ms(now);
                let expired: Vec<u32> = view
                    .meta
                    .shards
                    .iter()
                    .filter(|s| s.closed.is_some_and(|c| c.closed_ms < cutoff))
                    .map(|s| s.index)
                    .collect();
                (cutoff, view.shards.values().cloned().collect::<Vec<_>>(), expired)
            };
            for shard in &shards {
                if !expired.contains(&shard.index) {
                    report.segments_deleted += shard.log.expire_segments(cutoff)?;
                }
            }
            if !expired.is_empty() {
                report.shards_expired += self.expire_shards(state, &expired)?;
            }
        }
        Ok(report)
    }

    /// Removes closed, fully expired shards from the catalog, then deletes their logs.
    fn expire_shards(&self, state: &StreamState, expired: &[u32]) -> Result<usize> {
        let mut control = self.control();
        let Some(meta) = control.catalog.streams.get(&state.name) else { return Ok(0) };
        if meta.epoch != state.epoch {
            return Ok(0);
        }
        let meta = meta.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&state.name).expect("looked up above");
        entry.shards.retain(|s| !expired.contains(&s.index));
        let removed = meta.shards.len() - entry.shards.len();
        let mut view = state.write();
        self.commit_and_publish(&mut control, catalog, state, &mut view)?;
        drop(view);
        for index in expired {
            let dir = self.shard_dir(&meta, *index);
            crate::io::remove_dir_all(&dir)?;
        }
        Ok(removed)
    }
}
