//! This node's pods by uid, as the watcher last heard of them: written by the watcher task, read
//! by the container resolver for every event (a short read lock, never a wait on the network).
//!
//! A relist (the first list, and every one after a `410 Gone` or a lost watch) replaces the
//! map's contents without emptying it first: pods keep answering while the list arrives, and
//! those the new list lacks are dropped when it ends.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock,
    },
};

use super::pod::PodMeta;

/// What [`PodDirectory::upsert`] did with a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A pod not known before.
    Added,
    /// A known pod, replaced.
    Updated,
    /// A new pod refused: the directory holds its most pods already.
    Full,
}

/// The pods of this node by uid, bounded; see the [module documentation](self).
#[derive(Debug)]
pub struct PodDirectory {
    pods: RwLock<Pods>,
    generation: AtomicU64,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Pods {
    by_uid: HashMap<String, Arc<PodMeta>>,
    /// A static pod's uid on the node (its mirror's config hash) -> the mirror's uid.
    mirrors: HashMap<String, String>,
    /// The uids seen since the relist in progress began.
    relisted: Option<HashSet<String>>,
    /// Pods refused because the directory was full.
    refused: u64,
}

impl PodDirectory {
    /// An empty directory of at most `capacity` pods (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            pods: RwLock::default(),
            generation: AtomicU64::new(0),
            capacity: capacity.max(1),
        }
    }

    /// The pod whose uid is `uid`: the uid of its object, or for a static pod the uid the
    /// kubelet gave it on the node.
    pub fn get(&self, uid: &str) -> Option<Arc<PodMeta>> {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        match pods.by_uid.get(uid) {
            Some(pod) => Some(Arc::clone(pod)),
            None => pods
                .mirrors
                .get(uid)
                .and_then(|u| pods.by_uid.get(u))
                .cloned(),
        }
    }

    /// A number that changes whenever the directory does: a reader that saw the same
    /// generation before has nothing new to look up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of pods known.
    pub fn len(&self) -> usize {
        self.read().by_uid.len()
    }

    /// True when no pod is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pods refused so far because the directory was full.
    pub fn refused(&self) -> u64 {
        self.read().refused
    }

    /// Adds or replaces `pod`.
    pub fn upsert(&self, pod: PodMeta) -> Upsert {
        let mut pods = self.write();
        let known = pods.by_uid.contains_key(&pod.uid);
        if !known && pods.by_uid.len() >= self.capacity {
            pods.refused += 1;
            return Upsert::Full;
        }
        if let Some(relisted) = &mut pods.relisted {
            relisted.insert(pod.uid.clone());
        }
        let uid = pod.uid.clone();
        if let Some(old) = pods.by_uid.insert(uid.clone(), Arc::new(pod)) {
            if let Some(hash) = &old.mirror_of {
                pods.mirrors.remove(hash);
            }
        }
        if let Some(hash) = pods.by_uid[&uid].mirror_of.clone() {
            pods.mirrors.insert(hash, uid);
        }
        self.bump();
        if known {
            Upsert::Updated
        } else {
            Upsert::Added
        }
    }

    /// Forgets the pod with object uid `uid`; true when it was known.
    pub fn remove(&self, uid: &str) -> bool {
        let mut pods = self.write();
        let Some(old) = pods.by_uid.remove(uid) else {
            return false;
        };
        if let Some(hash) = &old.mirror_of {
            pods.mirrors.remove(hash);
        }
        self.bump();
        true
    }

    /// A relist begins: the pods it does not name are dropped at [`end_relist`](Self::end_relist).
    pub fn begin_relist(&self) {
        self.write().relisted = Some(HashSet::new());
    }

    /// The relist is complete: drops every pod it did not name; returns how many.
    pub fn end_relist(&self) -> usize {
        let mut pods = self.write();
        let Some(relisted) = pods.relisted.take() else {
            return 0;
        };
        let gone: Vec<String> = pods
            .by_uid
            .keys()
            .filter(|uid| !relisted.contains(*uid))
            .cloned()
            .collect();
        for uid in &gone {
            if let Some(old) = pods.by_uid.remove(uid) {
                if let Some(hash) = &old.mirror_of {
                    pods.mirrors.remove(hash);
                }
            }
        }
        if !gone.is_empty() {
            self.bump();
        }
        gone.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Pods> {
        self.pods.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Pods> {
        self.pods.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: name.into(),
            ..PodMeta::default()
        }
    }

    #[test]
    fn pods_are_added_replaced_and_removed_and_each_change_moves_the_generation() {
        let directory = PodDirectory::new(10);
        let g0 = directory.generation();
        assert_eq!(directory.upsert(pod("u1", "a")), Upsert::Added);
        assert_eq!(directory.upsert(pod("u1", "b")), Upsert::Updated);
        assert_eq!(directory.get("u1").unwrap().name, "b");
        let g1 = directory.generation();
        assert!(g1 > g0);
        assert!(directory.remove("u1"));
        assert!(!directory.remove("u1"));
        assert!(directory.get("u1").is_none());
        assert!(directory.generation() > g1);
    }

    #[test]
    fn a_full_directory_refuses_new_pods_but_updates_known_ones() {
        let directory = PodDirectory::new(2);
        directory.upsert(pod("u1", "a"));
        directory.upsert(pod("u2", "b"));
        assert_eq!(directory.upsert(pod("u3", "c")), Upsert::Full);
        assert_eq!(directory.upsert(pod("u2", "b2")), Upsert::Updated);
        assert_eq!((directory.len(), directory.refused()), (2, 1));
        assert!(directory.get("u3").is_none());
    }

    #[test]
    fn a_relist_keeps_answering_and_then_drops_the_pods_it_did_not_name() {
        let directory = PodDirectory::new(10);
        directory.upsert(pod("u1", "a"));
        directory.upsert(pod("u2", "b"));
        directory.begin_relist();
        directory.upsert(pod("u2", "b"));
        assert!(
            directory.get("u1").is_some(),
            "still known while the list arrives"
        );
        directory.upsert(pod("u3", "c"));
        assert_eq!(directory.end_relist(), 1);
        assert!(directory.get("u1").is_none());
        assert!(directory.get("u2").is_some() && directory.get("u3").is_some());
        assert_eq!(directory.end_relist(), 0, "no relist in progress");
    }

    #[test]
    fn a_static_pod_is_found_by_the_uid_the_kubelet_gave_it() {
        let directory = PodDirectory::new(10);
        let mut mirror = pod("mirror-uid", "etcd-node-1");
        mirror.mirror_of = Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0".into());
        directory.upsert(mirror);
        assert_eq!(
            directory
                .get("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
                .unwrap()
                .name,
            "etcd-node-1"
        );
        directory.remove("mirror-uid");
        assert!(directory.get("0f1e2d3c4b5a69788796a5b4c3d2e1f0").is_none());
    }
}
