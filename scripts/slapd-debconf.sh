#!/usr/bin/env bash
# Answer slapd's install questions before apt-get runs, so installing it is non-interactive and
# leaves no system-wide directory behind: the tests start private slapd processes of their own
# (tests/support/slapd.py), each with a generated config in a temp dir, never the system one.
#
# "no_configuration" makes slapd's postinst skip creating /etc/ldap/slapd.d and a database under
# /var/lib/ldap; with nothing configured, the postinst's attempt to start the daemon fails quietly
# (its init-failure handler ignores it), so a container without systemd or an init system is fine,
# and nothing ends up listening on port 389. Safe to run again; needs root (debconf's database).
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  exit 0  # bootstrap.sh reports missing packages to non-root users itself
fi
if dpkg-query -W -f='${Status}' slapd 2>/dev/null | grep -q "install ok installed"; then
  exit 0  # already installed: the answers only matter for the first install
fi
debconf-set-selections <<'SELECTIONS'
slapd slapd/no_configuration boolean true
slapd slapd/dump_database select never
slapd slapd/move_old_database boolean false
SELECTIONS
