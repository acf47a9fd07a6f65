//! Small views on proto events shared by the store and the alert record.

use kestrel_proto::Event;

/// The event kind as a stable lower-case name (`exec`, `fork`, `exit`, ...; `unknown` without payload).
pub fn kind(event: &Event) -> &'static str {
    event.kind_name()
}

/// A command line rebuilt from argv: the arguments joined by single spaces.
pub fn command_line(argv: &[String]) -> String {
    argv.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_proto::{event::Payload, ExecEvent, ExitEvent};

    #[test]
    fn kind_names_follow_the_payload() {
        let mut event = Event::default();
        assert_eq!(kind(&event), "unknown");
        event.payload = Some(Payload::Exec(ExecEvent::default()));
        assert_eq!(kind(&event), "exec");
        event.payload = Some(Payload::Exit(ExitEvent::default()));
        assert_eq!(kind(&event), "exit");
    }

    #[test]
    fn command_line_joins_argv_with_spaces() {
        let argv = ["cat".to_owned(), "/etc/shadow".to_owned()];
        assert_eq!(command_line(&argv), "cat /etc/shadow");
    }
}
