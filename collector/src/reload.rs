//! Hot reload of the rules directory, on SIGHUP and when its files change.
//!
//! The directory is polled ([`POLL_INTERVAL`]) for changed file names, sizes and modification
//! times. A new set replaces the running one only when every rule file in the directory is
//! valid; otherwise the running set stays and each problem is logged with its file, line and
//! reason. Detectors pick the new set up before their next event (see
//! [`kestrel_detect::SharedRules`]): no event is skipped or evaluated twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kestrel_detect::{rule_files, LoadError, RuleError, RuleSet, SharedRules};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the rules directory is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new set is in use from the next event on.
    Applied {
        /// Rules in the new set (detection and correlation).
        rules: usize,
        /// The shared set's new generation.
        generation: u64,
    },
    /// Some rule files are invalid: the running set stays.
    Rejected {
        /// Every problem found.
        errors: Vec<RuleError>,
    },
    /// The directory could not be read: the running set stays.
    Unreadable(LoadError),
}

/// Identity of the directory's rule files: path, size and modification time of each.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Reloads one rules directory into a [`SharedRules`].
#[derive(Debug, Clone)]
pub struct RuleReloader {
    dir: PathBuf,
    shared: Arc<SharedRules>,
    /// SIGHUP, registered at construction (see [`RuleReloader::new`]) and taken by `run`.
    hangup: Arc<Mutex<Option<Signal>>>,
}

impl RuleReloader {
    /// A reloader of `dir` into `shared`.
    ///
    /// Inside a Tokio runtime this also takes over SIGHUP at once: the default action of
    /// SIGHUP ends the process, so a reload requested while the collector is still starting
    /// must not wait until [`RuleReloader::run`] is polled (it is handled when `run` starts).
    pub fn new(dir: impl Into<PathBuf>, shared: Arc<SharedRules>) -> RuleReloader {
        let hangup = tokio::runtime::Handle::try_current()
            .ok()
            .and_then(|_| hangup_signal());
        RuleReloader {
            dir: dir.into(),
            shared,
            hangup: Arc::new(Mutex::new(hangup)),
        }
    }

    /// Loads the directory and, when every file is valid, replaces the shared set. Logs the
    /// outcome (each problem with its file, line and reason). Blocking file I/O.
    pub fn reload_now(&self, trigger: &str) -> ReloadOutcome {
        let outcome = match RuleSet::load_dir(&self.dir) {
            Err(e) => ReloadOutcome::Unreadable(e),
            Ok((_, errors)) if !errors.is_empty() => ReloadOutcome::Rejected { errors },
            Ok((set, _)) => {
                let rules = set.len();
                let generation = self.shared.replace(Arc::new(set));
                ReloadOutcome::Applied { rules, generation }
            }
        };
        let dir = self.dir.display();
        match &outcome {
            ReloadOutcome::Applied { rules, generation } => {
                info!(%dir, trigger, rules, generation, "rules reloaded");
            }
            ReloadOutcome::Rejected { errors } => {
                for e in errors {
                    warn!(%dir, trigger, "{e}");
                }
                warn!(
                    %dir,
                    trigger,
                    invalid = errors.len(),
                    "rules reload rejected: keeping the running rules"
                );
            }
            ReloadOutcome::Unreadable(e) => {
                warn!(%dir, trigger, "rules reload failed, keeping the running rules: {e}");
            }
        }
        outcome
    }

    /// Reloads on SIGHUP and on changes of the directory's rule files until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let registered = self.hangup.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut hangup = registered.or_else(hangup_signal);
        let mut seen = fingerprint(&self.dir);
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // The files as loaded now: the poll need not load them a second time.
                    seen = fingerprint(&self.dir);
                    "SIGHUP"
                }
                _ = ticker.tick() => {
                    let now = fingerprint(&self.dir);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "file change"
                }
            };
            let reloader = self.clone();
            let task = tokio::task::spawn_blocking(move || reloader.reload_now(trigger));
            if let Err(e) = task.await {
                warn!("rules reload task failed: {e}");
            }
        }
    }
}

/// A SIGHUP stream (`None`, logged, when the handler cannot be installed).
fn hangup_signal() -> Option<Signal> {
    signal(SignalKind::hangup())
        .map_err(|e| warn!("cannot handle SIGHUP, rules reload on file changes only: {e}"))
        .ok()
}

/// The rule files of `dir` with their sizes and modification times (empty when unreadable).
fn fingerprint(dir: &Path) -> Fingerprint {
    rule_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: t\nid: ID\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel: { Image|endswith: /cat }\n    condition: sel\n";

    fn shared_from(dir: &Path) -> Arc<SharedRules> {
        let (set, errors) = RuleSet::load_dir(dir).unwrap();
        assert!(errors.is_empty());
        SharedRules::new(Arc::new(set))
    }

    #[test]
    fn valid_directory_replaces_the_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE.replace("ID", "a")).unwrap();
        let shared = shared_from(dir.path());
        std::fs::write(dir.path().join("b.yml"), RULE.replace("ID", "b")).unwrap();
        let outcome = RuleReloader::new(dir.path(), shared.clone()).reload_now("test");
        assert!(
            matches!(
                outcome,
                ReloadOutcome::Applied {
                    rules: 2,
                    generation: 1
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(shared.current().len(), 2);
    }

    #[test]
    fn invalid_file_keeps_the_running_set_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE.replace("ID", "a")).unwrap();
        let shared = shared_from(dir.path());
        std::fs::write(dir.path().join("bad.yml"), "title: [").unwrap();
        let outcome = RuleReloader::new(dir.path(), shared.clone()).reload_now("test");
        let ReloadOutcome::Rejected { errors } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(errors[0].to_string().contains("bad.yml"), "{}", errors[0]);
        assert_eq!(shared.generation(), 0);
        assert_eq!(shared.current().rules()[0].id, "a");
    }

    #[test]
    fn vanished_directory_keeps_the_running_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE.replace("ID", "a")).unwrap();
        let shared = shared_from(dir.path());
        let gone = dir.path().join("gone");
        let outcome = RuleReloader::new(&gone, shared.clone()).reload_now("test");
        assert!(
            matches!(outcome, ReloadOutcome::Unreadable(_)),
            "{outcome:?}"
        );
        assert_eq!(shared.current().len(), 1);
    }

    #[test]
    fn fingerprint_changes_with_content_and_ignores_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE).unwrap();
        let before = fingerprint(dir.path());
        std::fs::create_dir(dir.path().join("fixtures")).unwrap();
        std::fs::write(dir.path().join("fixtures/a.yml"), "[]").unwrap();
        assert_eq!(fingerprint(dir.path()), before);
        std::fs::write(dir.path().join("a.yml"), format!("{RULE}# more\n")).unwrap();
        assert_ne!(fingerprint(dir.path()), before);
    }

    /// Every event is evaluated exactly once, by the set in use when it arrives: with two sets
    /// whose one rule matches every event, each event yields exactly one detection, from
    /// either set, while another thread keeps swapping them.
    #[test]
    fn no_event_is_lost_or_evaluated_twice_across_reloads() {
        use kestrel_proto::{event::Payload, Event, ExecEvent, Process};
        let set = |id: &str| {
            let (set, errors) = RuleSet::from_texts([(
                PathBuf::from(format!("{id}.yml")),
                RULE.replace("ID", id).replace("/cat", "/true").as_str(),
            )]);
            assert!(errors.is_empty(), "{errors:?}");
            Arc::new(set)
        };
        let (a, b) = (set("a"), set("b"));
        let shared = SharedRules::new(a.clone());
        let swapper = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    shared.replace(if i % 2 == 0 { b.clone() } else { a.clone() });
                    std::thread::yield_now();
                }
            })
        };
        let mut detector = kestrel_detect::Detector::with_shared(shared.clone());
        let event = Arc::new(Event {
            process: Some(Process {
                exe: "/usr/bin/true".into(),
                ..Default::default()
            }),
            payload: Some(Payload::Exec(ExecEvent::default())),
            ..Default::default()
        });
        let mut per_rule = std::collections::HashMap::new();
        let events = 200_000;
        for _ in 0..events {
            let detections = detector.evaluate(&event);
            assert_eq!(detections.len(), 1, "{detections:?}");
            *per_rule.entry(detections[0].rule.id.clone()).or_insert(0) += 1;
        }
        swapper.join().unwrap();
        assert_eq!(per_rule.values().sum::<usize>(), events);
        assert!(
            detector.stats().reloads > 0,
            "the detector followed the reloads"
        );
        assert_eq!(detector.stats().events, events as u64);
    }

    #[tokio::test]
    async fn file_change_is_picked_up_by_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE.replace("ID", "a")).unwrap();
        let shared = shared_from(dir.path());
        let stop = CancellationToken::new();
        let task = tokio::spawn(RuleReloader::new(dir.path(), shared.clone()).run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(dir.path().join("b.yml"), RULE.replace("ID", "b")).unwrap();
        let deadline = tokio::time::Instant::now() + POLL_INTERVAL * 5;
        while shared.generation() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        task.await.unwrap();
        // At least once: another test of this binary may send the process a SIGHUP.
        assert!(shared.generation() >= 1);
        assert_eq!(shared.current().len(), 2);
    }

    /// SIGHUP ends a process that does not handle it: the reloader takes it over when it is
    /// built, and a reload requested before `run` starts is done when it does.
    #[tokio::test]
    async fn sighup_before_run_is_handled_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), RULE.replace("ID", "a")).unwrap();
        let shared = shared_from(dir.path());
        let reloader = RuleReloader::new(dir.path(), shared.clone());
        std::fs::write(dir.path().join("b.yml"), RULE.replace("ID", "b")).unwrap();
        // SAFETY: raise(3) with a valid signal number.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(reloader.run(stop.clone()));
        // Sooner than the first poll that could see the new file.
        let deadline = tokio::time::Instant::now() + POLL_INTERVAL / 2;
        while shared.generation() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert!(
            shared.generation() >= 1,
            "the early SIGHUP reloaded the rules"
        );
        assert_eq!(shared.current().len(), 2);
    }
}
