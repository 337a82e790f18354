#!/usr/bin/env bash
# npm ci for one of the npm projects under clients/ (conformance, graphiql), only when its
# package-lock.json changed since the last install: a stamp in node_modules records the lockfile's
# hash, so .ci/run and the Go tests that need the packages can all call it. One install at a time.
#
#   bash clients/npm-ci.sh clients/conformance
set -euo pipefail
dir="${1:?usage: clients/npm-ci.sh DIR}"
cd "$dir"
command -v npm >/dev/null || { echo "npm-ci.sh: npm is required (Node.js 20 or newer)" >&2; exit 2; }
[ -f package-lock.json ] || { echo "npm-ci.sh: $dir has no package-lock.json" >&2; exit 2; }
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp=node_modules/.taskgraph-lock-sha256
exec 9>.npm-ci.lock
flock 9
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then exit 0; fi
echo "$dir: npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
