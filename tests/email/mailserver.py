"""A private Dovecot and Postfix for the email tests: real mail servers on free loopback ports.

Dovecot serves IMAP (with IDLE) and LMTP from its own base_dir, a static
passwd-file and Maildirs under one temporary directory; it is not the
system instance and touches nothing of it. Postfix, from its own config and
queue directories there too, takes SMTP (with AUTH through Dovecot's auth
service) and delivers every recipient of the test domains into that Dovecot
by LMTP. So an email "from a customer" is delivered by LMTP, crmhub reads it
by IMAP, and crmhub's reply goes through a real SMTP server into the
customer's mailbox, which the test reads back by IMAP.

Debian's packages come from scripts/install-mailserver.sh (`make test` runs it);
without them, `MailServerAbsent` says what is missing and the tests skip.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import imapclient

DOVECOT = "/usr/sbin/dovecot"
POSTFIX = "/usr/sbin/postfix"
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
LMTP = "/usr/lib/dovecot/lmtp"
DOMAINS = ("crmhub.test", "customers.test")
PASSWORD = "mail-test-password"  # a test value for every mailbox of the private instance, nothing real


class MailServerAbsent(Exception):
    """The mail server binaries are not installed (or cannot start here): the email tests skip with this."""


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
    """Block until something accepts on `port`, or fail with the server's log when the process died."""
    for _ in range(400):
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if process.poll() is not None and name == "dovecot" and process.returncode != 0:
            break
        with suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
    text = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise MailServerAbsent(f"{name} did not listen on 127.0.0.1:{port}: {text}")


@dataclass
class MailServer:
    """The running pair: ports, and helpers to deliver, read and clear mailboxes."""

    root: Path
    imap_port: int
    lmtp_port: int
    smtp_port: int
    users: tuple[str, ...]
    password: str = PASSWORD
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ca_file(self) -> str:
        """The servers' self-signed certificate, to verify their TLS with."""
        return str(self.root / "tls" / "cert.pem")

    # ---- what tests do -----------------------------------------------------------
    def deliver(self, message: EmailMessage | bytes, to: str, *, sender: str = "") -> None:
        """Real delivery into `to`'s INBOX by LMTP (as an MTA would after accepting the customer's mail)."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [to], raw)

    @contextmanager
    def imap(self, user: str) -> Iterator[imapclient.IMAPClient]:
        client = imapclient.IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=30)
        try:
            client.login(user, self.password)
            yield client
        finally:
            with suppress(Exception):
                client.logout()

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message in `user`'s folder, oldest first, without marking any as seen."""
        with self.imap(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]

    def await_messages(self, user: str, count: int, folder: str = "INBOX", timeout: float = 60) -> list[bytes]:
        """`user`'s messages once there are at least `count` (Postfix delivers after it answers).

        Waits in IMAP IDLE, a second at a time, looking again after each: mail
        that arrived just before IDLE began is not announced in it.
        """
        with self.imap(user) as client:
            client.select_folder(folder, readonly=True)
            for _ in range(int(timeout)):
                if len(client.search("ALL")) >= count:
                    break
                client.idle()
                try:
                    client.idle_check(timeout=1)
                finally:
                    client.idle_done()
            else:
                raise AssertionError(f"{user} got fewer than {count} messages in {timeout} s")
        return self.messages(user, folder)

    def clear(self) -> None:
        """Empty every user's mailboxes (and UID state), between tests."""
        for user in self.users:
            shutil.rmtree(self._home(user) / "Maildir", ignore_errors=True)

    def _home(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.root / "home" / domain / local

    def stop(self) -> None:
        """Stop both servers, then remove their directory (config, queue, mailboxes)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _require_binaries() -> None:
    missing = [path for path in (DOVECOT, LMTP, POSTFIX, POSTFIX_MASTER) if not os.access(path, os.X_OK)]
    if missing:
        raise MailServerAbsent(f"{', '.join(missing)} not installed: run scripts/install-mailserver.sh as root "
                               "(Debian's dovecot-imapd, dovecot-lmtpd and postfix) to run the email tests")


def _mail_account() -> tuple[int, int]:
    """The uid/gid mailboxes are kept as: `mail` when we are root (Dovecot refuses root), else ourselves."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("mail")
        return entry.pw_uid, entry.pw_gid
    return os.getuid(), os.getgid()


def _dovecot_conf(root: Path, server: MailServer, auth_port: int, uid: int, gid: int) -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    unprivileged = "" if os.geteuid() == 0 else f"default_login_user = {user}\ndefault_internal_user = {user}\n"
    return f"""\
instance_name = crmhub-test-{server.imap_port}
base_dir = {root}/run
state_dir = {root}/state
protocols = imap lmtp
listen = 127.0.0.1
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
{unprivileged}mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {server.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {server.lmtp_port}
  }}
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{DOMAINS[0]}
}}
"""


POSTFIX_SERVICES = """\
{smtp_port} inet  n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000 1 tlsmgr
"""


def _postfix_main(root: Path, server: MailServer, auth_port: int) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/postfix/queue
data_directory = {root}/postfix/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.{DOMAINS[0]}
mydomain = {DOMAINS[0]}
myorigin = $mydomain
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
virtual_mailbox_domains = {' '.join(DOMAINS)}
virtual_transport = lmtp:inet:127.0.0.1:{server.lmtp_port}
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth_port}
smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {root}/tls/cert.pem
smtpd_tls_key_file = {root}/tls/key.pem
smtpd_tls_security_level = may
smtputf8_enable = no
biff = no
alias_maps =
alias_database =
"""


def _self_signed(directory: Path) -> None:
    """A key and a certificate for 127.0.0.1 and localhost; the certificate is also the tests' CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmhub test mail server")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    directory.mkdir()
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").chmod(0o644)  # read by Postfix's smtpd as user postfix (a throw-away test key)


def start(users: tuple[str, ...]) -> MailServer:
    """Start the pair for `users` (addresses in `DOMAINS`); raises `MailServerAbsent` when it cannot."""
    _require_binaries()
    root = Path(tempfile.mkdtemp(prefix="crmhub-mail-"))
    root.chmod(0o755)  # Dovecot's and Postfix's own users traverse it
    server = MailServer(root, free_port(), free_port(), free_port(), users)
    auth_port = free_port()
    uid, gid = _mail_account()
    for sub in ("run", "state", "home"):
        (root / sub).mkdir()
    _self_signed(root / "tls")
    os.chown(root / "home", uid, gid)
    for user in users:
        home = server._home(user)
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home.parent, uid, gid)
        os.chown(home, uid, gid)
    (root / "users").write_text("".join(f"{user}:{{PLAIN}}{PASSWORD}\n" for user in users))
    (root / "dovecot.conf").write_text(_dovecot_conf(root, server, auth_port, uid, gid))
    try:
        dovecot = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                   stdout=subprocess.DEVNULL, stderr=(root / "dovecot.err").open("wb"))
        server.processes.append(dovecot)
        _wait_listening(server.lmtp_port, dovecot, root / "dovecot.log", "dovecot")
        _wait_listening(server.imap_port, dovecot, root / "dovecot.log", "dovecot")
        if os.geteuid() != 0:
            raise MailServerAbsent("Postfix runs only as root; the email tests that send by SMTP need root")
        config = root / "postfix"
        (config / "queue").mkdir(parents=True)
        (config / "data").mkdir()
        postfix = pwd.getpwnam("postfix")
        os.chown(config / "data", postfix.pw_uid, postfix.pw_gid)
        (config / "main.cf").write_text(_postfix_main(root, server, auth_port))
        (config / "master.cf").write_text(POSTFIX_SERVICES.format(smtp_port=server.smtp_port))
        subprocess.run([POSTFIX, "-c", str(config), "check"], check=True, capture_output=True, timeout=60)
        master = subprocess.Popen([POSTFIX_MASTER, "-c", str(config), "-d"],
                                  stdout=subprocess.DEVNULL, stderr=(root / "postfix.err").open("wb"))
        server.processes.append(master)
        _wait_listening(server.smtp_port, master, root / "postfix.err", "postfix")
    except subprocess.CalledProcessError as exc:
        server.stop()
        raise MailServerAbsent(f"postfix check failed: {exc.stderr.decode(errors='replace')[-2000:]}") from exc
    except BaseException:
        server.stop()
        raise
    return server
