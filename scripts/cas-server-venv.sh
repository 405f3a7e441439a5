#!/usr/bin/env bash
# Create .cache/cas-server-venv: django-cas-server (a CAS 3.0 server) and the waitress WSGI server,
# which tests/support/cas_server.py runs as a process of its own on a loopback port. A virtualenv
# of its own because its Django must not collide with the portal's dependencies in .venv.
# Reinstalls only when scripts/cas-server-requirements.txt changed; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.cache/cas-server-venv
REQUIREMENTS=scripts/cas-server-requirements.txt
if [[ ! -x $VENV/bin/python ]]; then
  mkdir -p .cache
  "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.installed-$(sha256sum "$REQUIREMENTS" | cut -c1-16)
if [[ ! -f $stamp ]]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
