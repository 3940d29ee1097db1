#!/usr/bin/env bash
# The email tests (tests/email/) run a private Dovecot (IMAP with IDLE, LMTP delivery) and a private Postfix
# (SMTP, delivering into that Dovecot by LMTP) per test session: real mail servers, not mocks. `make test` runs
# this first: it installs Debian's packages where it can (root with apt) and otherwise says why, and those tests
# skip saying so. Nothing is started or enabled here; the tests start their own instances on free ports.
set -u
PACKAGES="dovecot-imapd dovecot-lmtpd postfix"
have() { [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/postfix/sbin/master ] && [ -x /usr/lib/dovecot/lmtp ]; }
if have; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-mailserver: not root with apt-get; the email tests will skip (install Debian's $PACKAGES to run them)"
    exit 0
fi
echo "install-mailserver: installing Debian's $PACKAGES for the email tests (once)"
LOG=/tmp/crmhub-mailserver-install.log
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how it is used; "No configuration" leaves the system instance unconfigured and unstarted.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>>"$LOG"
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $PACKAGES >"$LOG" 2>&1 \
    || { apt-get update -q -o DPkg::Lock::Timeout=600 >>"$LOG" 2>&1 \
         && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $PACKAGES >>"$LOG" 2>&1; } \
    || echo "install-mailserver: apt-get could not install $PACKAGES (see $LOG); the email tests will skip"
exit 0
