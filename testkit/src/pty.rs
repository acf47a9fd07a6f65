//! Running a command on a terminal: a pseudo-terminal pair that becomes the command's
//! controlling terminal, as for an interactive shell in `ssh` or `kubectl exec -it`.

use std::{
    os::{fd::RawFd, unix::process::CommandExt},
    process::Command,
};

/// An open pseudo-terminal pair, closed on drop.
pub struct Pty {
    master: RawFd,
    slave: RawFd,
    /// The terminal's name as `ps` shows it (`pts/3`).
    pub name: String,
}

impl Pty {
    /// Opens a new pseudo-terminal pair.
    pub fn open() -> Pty {
        let (mut master, mut slave) = (0, 0);
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        let path = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
        let name = path
            .strip_prefix("/dev")
            .unwrap_or_else(|_| panic!("a pty slave outside /dev: {}", path.display()))
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_owned();
        Pty {
            master,
            slave,
            name,
        }
    }

    /// Makes `command` start in a new session whose controlling terminal is this one.
    pub fn make_controlling(&self, command: &mut Command) {
        let slave = self.slave;
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.master);
            libc::close(self.slave);
        }
    }
}

/// Makes `command` start in a new session without a controlling terminal.
pub fn without_terminal(command: &mut Command) {
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
