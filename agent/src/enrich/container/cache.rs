//! A bounded map from cgroup id to what is known about that cgroup, forgetting cgroups that
//! have not been seen for a while.
//!
//! Cgroup ids are never reused while a host is up, so a container that has ended is simply a
//! key that is never asked for again: idle expiry removes it. When the map is full, the entry
//! seen least recently makes room.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Bounded, idle-expiring map keyed by cgroup id.
#[derive(Debug)]
pub struct CgroupCache<V> {
    entries: HashMap<u64, Slot<V>>,
    capacity: usize,
    idle_expiry: Duration,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    last_seen: Instant,
}

impl<V> CgroupCache<V> {
    /// A cache of at most `capacity` entries (at least one) that drops entries not looked up
    /// for `idle_expiry`.
    pub fn new(capacity: usize, idle_expiry: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            idle_expiry,
        }
    }

    /// The entry for `cgroup_id`, marked as seen at `now`.
    pub fn get_mut(&mut self, cgroup_id: u64, now: Instant) -> Option<&mut V> {
        let slot = self.entries.get_mut(&cgroup_id)?;
        slot.last_seen = now;
        Some(&mut slot.value)
    }

    /// The entry for `cgroup_id` without marking it seen (for results arriving in the
    /// background).
    pub fn peek_mut(&mut self, cgroup_id: u64) -> Option<&mut V> {
        self.entries.get_mut(&cgroup_id).map(|slot| &mut slot.value)
    }

    /// Stores `value` for `cgroup_id`, seen at `now`. When the cache is full, idle entries go
    /// first, then the least recently seen one.
    pub fn insert(&mut self, cgroup_id: u64, value: V, now: Instant) {
        if !self.entries.contains_key(&cgroup_id) && self.entries.len() >= self.capacity {
            self.expire(now);
            if self.entries.len() >= self.capacity {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, slot)| slot.last_seen)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(
            cgroup_id,
            Slot {
                value,
                last_seen: now,
            },
        );
    }

    /// Drops every entry not seen within the idle expiry before `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let idle_expiry = self.idle_expiry;
        self.entries
            .retain(|_, slot| now.saturating_duration_since(slot.last_seen) < idle_expiry);
        before - self.entries.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by cgroup id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.entries.iter().map(|(id, slot)| (*id, &slot.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn entries_not_seen_within_the_expiry_are_dropped() {
        let start = Instant::now();
        let mut cache = CgroupCache::new(10, MINUTE);
        cache.insert(1, "a", start);
        cache.insert(2, "b", start);
        assert_eq!(
            cache.get_mut(2, start + 50 * Duration::from_secs(1)),
            Some(&mut "b")
        );
        assert_eq!(cache.expire(start + MINUTE + Duration::from_secs(1)), 1);
        assert_eq!(cache.get_mut(1, start + MINUTE), None);
        assert!(cache.get_mut(2, start + MINUTE).is_some());
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_seen_entry() {
        let start = Instant::now();
        let mut cache = CgroupCache::new(2, MINUTE);
        cache.insert(1, 'a', start);
        cache.insert(2, 'b', start + Duration::from_secs(1));
        cache.get_mut(1, start + Duration::from_secs(2));
        cache.insert(3, 'c', start + Duration::from_secs(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.peek_mut(2).is_none(), "2 was seen least recently");
        assert!(cache.peek_mut(1).is_some() && cache.peek_mut(3).is_some());
    }

    #[test]
    fn a_full_cache_drops_idle_entries_before_evicting_live_ones() {
        let start = Instant::now();
        let mut cache = CgroupCache::new(3, MINUTE);
        cache.insert(1, 'a', start);
        cache.insert(2, 'b', start);
        cache.insert(3, 'c', start + 2 * MINUTE);
        cache.insert(4, 'd', start + 2 * MINUTE);
        assert_eq!(cache.len(), 2);
        assert!(cache.peek_mut(3).is_some() && cache.peek_mut(4).is_some());
    }

    #[test]
    fn replacing_an_entry_in_a_full_cache_evicts_nothing() {
        let start = Instant::now();
        let mut cache = CgroupCache::new(2, MINUTE);
        cache.insert(1, 'a', start);
        cache.insert(2, 'b', start);
        cache.insert(1, 'z', start);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.peek_mut(1), Some(&mut 'z'));
    }
}
