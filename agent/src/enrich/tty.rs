//! Names of controlling terminals. The kernel gives a terminal as a device number encoded like
//! `tty_nr` in `/proc/PID/stat`; rules and people want `pts/3` or `tty1`, as `ps` shows them.

use std::collections::HashMap;

/// Terminal names remembered at most (Linux allows 4,096 pseudo-terminals by default).
const NAMES_CAPACITY: usize = 4096;

/// Terminal names by `tty_nr`, each worked out once: every event names its process's terminal,
/// and a name may take a sysfs read.
#[derive(Debug, Default)]
pub struct Names {
    known: HashMap<u32, Option<String>>,
}

impl Names {
    /// [`name`] of `tty_nr`, from memory after the first time.
    pub fn get(&mut self, tty_nr: u32) -> Option<&str> {
        if tty_nr == 0 {
            return None;
        }
        if self.known.len() >= NAMES_CAPACITY && !self.known.contains_key(&tty_nr) {
            self.known.clear();
        }
        self.known
            .entry(tty_nr)
            .or_insert_with(|| name(tty_nr))
            .as_deref()
    }
}

/// Major and minor device numbers of a `tty_nr` (the kernel's `new_encode_dev`).
pub fn device(tty_nr: u32) -> (u32, u32) {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xf_ff00);
    (major, minor)
}

/// The name of the terminal `tty_nr` (`None` for 0, no terminal): `pts/N` for pseudo-terminals,
/// `ttyN` and `ttySN` for virtual consoles and serial ports, `console`, else the device node's
/// name from sysfs, else `MAJOR:MINOR`.
pub fn name(tty_nr: u32) -> Option<String> {
    if tty_nr == 0 {
        return None;
    }
    let (major, minor) = device(tty_nr);
    Some(match (major, minor) {
        // Unix98 pseudo-terminal slaves: majors 136 to 143, 256 minors each.
        (136..=143, _) => format!("pts/{}", (major - 136) * 256 + minor),
        (4, 0..=63) => format!("tty{minor}"),
        (4, _) => format!("ttyS{}", minor - 64),
        (5, 1) => "console".to_owned(),
        _ => sysfs_name(major, minor).unwrap_or_else(|| format!("{major}:{minor}")),
    })
}

/// `DEVNAME` of a character device in sysfs (`ttyUSB0`, `hvc0`, …).
fn sysfs_name(major: u32, minor: u32) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/char/{major}:{minor}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tty_nr` of major and minor, as the kernel encodes it.
    fn encode(major: u32, minor: u32) -> u32 {
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(name(0), None);
        assert_eq!(name(encode(136, 3)).as_deref(), Some("pts/3"));
        assert_eq!(name(encode(136, 300)).as_deref(), Some("pts/300"));
        assert_eq!(name(encode(137, 2)).as_deref(), Some("pts/258"));
        assert_eq!(name(encode(4, 1)).as_deref(), Some("tty1"));
        assert_eq!(name(encode(4, 64)).as_deref(), Some("ttyS0"));
        let mut names = Names::default();
        assert_eq!(names.get(encode(136, 3)), Some("pts/3"));
        assert_eq!(names.get(encode(136, 3)), Some("pts/3"));
        assert_eq!(names.get(0), None);
        assert_eq!(name(encode(5, 1)).as_deref(), Some("console"));
        assert_eq!(device(encode(136, 300)), (136, 300));
    }
}
