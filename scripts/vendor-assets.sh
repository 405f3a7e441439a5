#!/usr/bin/env bash
# The browser files the web pages serve (htmx, ECharts, Swagger UI, the icon sprite), installed from
# the npm packages pinned in vmportal/web/assets/package-lock.json and copied into
# vmportal/web/static/vendor/ (not in git), so that no page loads anything from a CDN: campus
# intranets are often offline. Then the message catalogs are compiled (scripts/catalogs.sh).
#
# Instant on a re-run: a stamp in static/vendor/ records the lock file, the copy list and the sprite
# builder, and the npm install is done again only when one of them changed or a file is missing.
# The npm packages live in a cache folder (VMPORTAL_ASSET_CACHE, default .cache/web-assets), which
# also keeps axe-core for the accessibility tests: it is never served.
set -euo pipefail
cd "$(dirname "$0")/.."

ASSETS=vmportal/web/assets
VENDOR=vmportal/web/static/vendor
CACHE=${VMPORTAL_ASSET_CACHE:-.cache/web-assets}
PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

mkdir -p "$CACHE"
# Two test workers, or `make run` beside `make test`, must not install into one folder at once.
exec 9>"$CACHE/.lock"
flock 9

key=$(cat "$ASSETS/package.json" "$ASSETS/package-lock.json" "$ASSETS/vendor.txt" \
  vmportal/web/icons.py "$0" | sha256sum | cut -c1-16)

copy_list() { grep -Ev '^[[:space:]]*(#|$)' "$ASSETS/vendor.txt"; }

up_to_date() {
  [[ -f $VENDOR/.stamp && $(<"$VENDOR/.stamp") == "$key" ]] || return 1
  local src dest
  while read -r src dest; do [[ -s $VENDOR/$dest ]] || return 1; done < <(copy_list)
  [[ -s $VENDOR/icons/icons.svg && -s $CACHE/node_modules/axe-core/axe.min.js ]]
}

if ! up_to_date; then
  if ! command -v npm >/dev/null 2>&1; then
    cat >&2 <<'EOF'
vendor-assets: npm is not installed. The web pages serve htmx, ECharts and Swagger UI from this
machine (never from a CDN), and npm fetches them once from the npm registry.
  Install Node.js 20 with npm (on Debian: apt-get install nodejs npm), then run scripts/vendor-assets.sh
EOF
    exit 1
  fi
  if [[ ! -f $CACHE/.installed || $(<"$CACHE/.installed") != "$key" ]]; then
    echo "vendor-assets: installing the pinned npm packages into $CACHE"
    cp "$ASSETS/package.json" "$ASSETS/package-lock.json" "$ASSETS/.npmrc" "$CACHE/"
    # --ignore-scripts: nothing here needs an install script, and swagger-ui-dist's dependency
    # @scarf/scarf would otherwise report the install to its analytics service.
    (cd "$CACHE" && npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)
    echo "$key" >"$CACHE/.installed"
  fi
  staging=$(mktemp -d "$VENDOR.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  while read -r src dest; do
    if [[ ! -s $CACHE/node_modules/$src ]]; then
      echo "vendor-assets: $src is not in the installed npm packages (see $ASSETS/vendor.txt)" >&2
      exit 1
    fi
    mkdir -p "$staging/$(dirname "$dest")"
    cp "$CACHE/node_modules/$src" "$staging/$dest"
  done < <(copy_list)
  "$PYTHON" -m vmportal.web.icons "$CACHE/node_modules/lucide-static/icons" "$staging/icons/icons.svg"
  if [[ ! -s $CACHE/node_modules/axe-core/axe.min.js ]]; then
    echo "vendor-assets: axe-core/axe.min.js is missing from the installed npm packages" >&2
    exit 1
  fi
  chmod 755 "$staging"
  rm -rf "$VENDOR"
  mv "$staging" "$VENDOR"
  trap - EXIT
  echo "$key" >"$VENDOR/.stamp"
  echo "vendor-assets: $(copy_list | wc -l) files and the icon sprite in $VENDOR"
fi

scripts/catalogs.sh compile
