//! The one mapping table from Sigma field names to event data, and a per-event view that computes
//! each field value (and its lowercase form) at most once, however many rules read it.

use std::borrow::Cow;
use std::cell::OnceCell;

use kestrel_proto::{event::Payload, Ancestor, Event, Process};

/// A Sigma field that Kestrel can evaluate on a `process_creation` (exec) event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `process.exe`.
    Image,
    /// `process.argv` joined by single spaces.
    CommandLine,
    /// `exec.ancestors[0].exe`.
    ParentImage,
    /// `exec.ancestors[0].argv` joined by single spaces.
    ParentCommandLine,
    /// `process.user`.
    User,
    /// `process.cwd`.
    CurrentDirectory,
    /// `process.tgid` in decimal.
    ProcessId,
    /// `process.ppid` in decimal.
    ParentProcessId,
    /// `exec.ancestors[0].user`.
    ParentUser,
}

/// Sigma field name -> field. The only place that knows the names.
const FIELDS: &[(&str, Field)] = &[
    ("Image", Field::Image),
    ("CommandLine", Field::CommandLine),
    ("ParentImage", Field::ParentImage),
    ("ParentCommandLine", Field::ParentCommandLine),
    ("User", Field::User),
    ("CurrentDirectory", Field::CurrentDirectory),
    ("ProcessId", Field::ProcessId),
    ("ParentProcessId", Field::ParentProcessId),
    ("ParentUser", Field::ParentUser),
];

const FIELD_COUNT: usize = FIELDS.len();

impl Field {
    /// Looks a Sigma field name up in the mapping table (names are case-sensitive, as in Sigma).
    pub(crate) fn from_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The Sigma name of this field.
    pub(crate) fn name(self) -> &'static str {
        FIELDS[self.index()].0
    }

    /// True for fields whose values are decimal numbers (numeric comparison modifiers apply).
    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Field::ProcessId | Field::ParentProcessId)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One field value as seen by matchers: the original text and its lowercase form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Value<'v> {
    /// The value as recorded.
    pub(crate) raw: &'v str,
    /// `raw` lowercased, for case-insensitive literal matching.
    pub(crate) lower: &'v str,
}

/// Lazily computed field values of one exec event, shared by every rule evaluated on it.
pub(crate) struct EventView<'a> {
    process: Option<&'a Process>,
    parent: Option<&'a Ancestor>,
    raw: [OnceCell<Option<Cow<'a, str>>>; FIELD_COUNT],
    /// `Some(lowercase)` when lowercasing changed the value; `None` when `raw` is already lowercase.
    lower: [OnceCell<Option<String>>; FIELD_COUNT],
}

impl<'a> EventView<'a> {
    /// A view of `event` when it is a process creation (exec) event, `None` otherwise.
    pub(crate) fn process_creation(event: &'a Event) -> Option<EventView<'a>> {
        let Some(Payload::Exec(exec)) = &event.payload else {
            return None;
        };
        Some(EventView {
            process: event.process.as_ref(),
            parent: exec.ancestors.first(),
            raw: Default::default(),
            lower: Default::default(),
        })
    }

    /// The value of `field`, or `None` when the event does not carry it (e.g. no known parent).
    pub(crate) fn get(&self, field: Field) -> Option<Value<'_>> {
        let i = field.index();
        let raw = self.raw[i].get_or_init(|| self.compute(field)).as_deref()?;
        let lower = self.lower[i]
            .get_or_init(|| needs_lowercasing(raw).then(|| raw.to_lowercase()))
            .as_deref()
            .unwrap_or(raw);
        Some(Value { raw, lower })
    }

    fn compute(&self, field: Field) -> Option<Cow<'a, str>> {
        let process = self.process;
        let parent = self.parent;
        match field {
            Field::Image => process.map(|p| Cow::Borrowed(p.exe.as_str())),
            Field::CommandLine => process.map(|p| join_argv(&p.argv)),
            Field::ParentImage => parent.map(|a| Cow::Borrowed(a.exe.as_str())),
            Field::ParentCommandLine => parent.map(|a| join_argv(&a.argv)),
            Field::User => process.map(|p| Cow::Borrowed(p.user.as_str())),
            Field::CurrentDirectory => process.map(|p| Cow::Borrowed(p.cwd.as_str())),
            Field::ProcessId => process.map(|p| Cow::Owned(p.tgid.to_string())),
            Field::ParentProcessId => process.map(|p| Cow::Owned(p.ppid.to_string())),
            Field::ParentUser => parent.map(|a| Cow::Borrowed(a.user.as_str())),
        }
    }
}

fn join_argv(argv: &[String]) -> Cow<'_, str> {
    match argv {
        [only] => Cow::Borrowed(only.as_str()),
        _ => Cow::Owned(argv.join(" ")),
    }
}

fn needs_lowercasing(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        s.chars().any(|c| c.to_lowercase().ne(std::iter::once(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_proto::ExecEvent;

    fn exec_event(argv: &[&str], ancestors: Vec<Ancestor>) -> Event {
        Event {
            process: Some(Process {
                tgid: 4242,
                ppid: 7,
                user: "Alice".into(),
                exe: "/usr/bin/Cat".into(),
                cwd: "/home/alice".into(),
                argv: argv.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            payload: Some(Payload::Exec(ExecEvent {
                ancestors,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn every_table_name_round_trips() {
        for (name, field) in FIELDS {
            assert_eq!(Field::from_name(name), Some(*field));
            assert_eq!(field.name(), *name);
        }
        assert_eq!(Field::from_name("commandline"), None);
        assert_eq!(Field::from_name("TargetFilename"), None);
    }

    #[test]
    fn exec_fields_map_to_process_and_first_ancestor() {
        let parent = Ancestor {
            exe: "/bin/bash".into(),
            argv: vec!["bash".into(), "-i".into()],
            user: "root".into(),
            ..Default::default()
        };
        let event = exec_event(&["cat", "/etc/Shadow"], vec![parent, Ancestor::default()]);
        let view = EventView::process_creation(&event).expect("exec event");
        let raw = |f| view.get(f).map(|v| v.raw.to_string());
        assert_eq!(raw(Field::Image).as_deref(), Some("/usr/bin/Cat"));
        assert_eq!(raw(Field::CommandLine).as_deref(), Some("cat /etc/Shadow"));
        assert_eq!(raw(Field::ParentImage).as_deref(), Some("/bin/bash"));
        assert_eq!(raw(Field::ParentCommandLine).as_deref(), Some("bash -i"));
        assert_eq!(raw(Field::User).as_deref(), Some("Alice"));
        assert_eq!(raw(Field::CurrentDirectory).as_deref(), Some("/home/alice"));
        assert_eq!(raw(Field::ProcessId).as_deref(), Some("4242"));
        assert_eq!(raw(Field::ParentProcessId).as_deref(), Some("7"));
        assert_eq!(raw(Field::ParentUser).as_deref(), Some("root"));
        assert_eq!(
            view.get(Field::CommandLine).unwrap().lower,
            "cat /etc/shadow"
        );
    }

    #[test]
    fn parent_fields_are_absent_without_ancestors() {
        let event = exec_event(&["ls"], Vec::new());
        let view = EventView::process_creation(&event).unwrap();
        assert!(view.get(Field::ParentImage).is_none());
        assert!(view.get(Field::ParentUser).is_none());
        assert!(view.get(Field::Image).is_some());
    }

    #[test]
    fn non_exec_events_have_no_process_creation_view() {
        let mut event = exec_event(&["ls"], Vec::new());
        event.payload = Some(Payload::Exit(Default::default()));
        assert!(EventView::process_creation(&event).is_none());
        event.payload = None;
        assert!(EventView::process_creation(&event).is_none());
    }

    #[test]
    fn lowercasing_handles_non_ascii() {
        assert!(needs_lowercasing("ÄBC"));
        assert!(!needs_lowercasing("äbc/ß"));
        assert!(!needs_lowercasing("/usr/bin/cat"));
    }
}
