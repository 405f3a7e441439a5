#!/usr/bin/env bash
# The web pages' message catalogs (vmportal/web/locale/<lang>/LC_MESSAGES/messages.po).
#   scripts/catalogs.sh compile   (default; run at install) each .po -> the .mo gettext reads, only
#                                 where the .po is newer, so a re-run costs nothing
#   scripts/catalogs.sh update    extract the messages of vmportal/**/*.py and the templates into
#                                 messages.pot, merge them into every .po, then compile
# After `update`, translate the new entries (empty msgstr, or marked fuzzy) in zh_CN/messages.po.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCALE=vmportal/web/locale
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
if [[ ! -x $PYBABEL ]]; then
  echo "catalogs: $PYBABEL not found (run scripts/venv.sh first, which installs Babel)" >&2
  exit 1
fi

compile() {
  local po mo
  for po in "$LOCALE"/*/LC_MESSAGES/messages.po; do
    mo=${po%.po}.mo
    if [[ ! $mo -nt $po ]]; then
      "$PYBABEL" -q compile -i "$po" -o "$mo"
    fi
  done
}

case ${1:-compile} in
  compile)
    compile
    ;;
  update)
    "$PYBABEL" -q extract -F vmportal/web/babel.cfg --project=vmportal --copyright-holder="vmportal" \
      --sort-by-file --width=100 -o "$LOCALE/messages.pot" vmportal
    "$PYBABEL" -q update -i "$LOCALE/messages.pot" -d "$LOCALE" --width=100 --ignore-obsolete
    compile
    ;;
  *)
    echo "usage: scripts/catalogs.sh [compile|update]" >&2
    exit 2
    ;;
esac
