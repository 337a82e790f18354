#!/usr/bin/env bash
# Breaking-change check for the GraphQL schema (docs/schema-versioning.md).
#
#   bash scripts/schema-check.sh [BASELINE [SCHEMA [CHANGELOG]]]
#
# Compares SCHEMA (default schema/schema.snapshot.graphql, which TestSnapshotIsCurrent keeps equal to
# the code) with BASELINE (default: the newest schema/released/<version>.graphql) using
# graphql-inspector, then fails if a breaking change is not acknowledged in CHANGELOG (default
# CHANGELOG.md): its "## [Unreleased]" section needs a line containing "BREAKING:" and the change's
# path, e.g. "- BREAKING: `Query.tasks` removed; use `Query.search` instead." Dangerous changes (a new
# enum value, a new optional argument, ...) are printed but never fail the check.
#
# graphql-inspector is installed from npm on first use into .tools/graphql-inspector (gitignored) and
# reused after that; GRAPHQL_INSPECTOR_VERSION / GRAPHQL_JS_VERSION pin what is installed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

INSPECTOR_VERSION="${GRAPHQL_INSPECTOR_VERSION:-7.0.0}"
GRAPHQL_JS_VERSION="${GRAPHQL_JS_VERSION:-16.15.0}"
prefix="$root/.tools/graphql-inspector"
inspector="$prefix/node_modules/.bin/graphql-inspector"

die() { echo "schema-check: $*" >&2; exit 2; }

command -v node >/dev/null || die "node is required (Node.js 20 or newer)"
command -v npm >/dev/null || die "npm is required"

installed_version() { # prints the installed version of package $1, or nothing
  local pj="$prefix/node_modules/$1/package.json"
  [ -f "$pj" ] && node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

install_inspector() {
  if [ "$(installed_version @graphql-inspector/cli)" = "$INSPECTOR_VERSION" ] &&
     [ "$(installed_version graphql)" = "$GRAPHQL_JS_VERSION" ] && [ -x "$inspector" ]; then
    return
  fi
  echo "schema-check: installing @graphql-inspector/cli@$INSPECTOR_VERSION into .tools/graphql-inspector"
  rm -rf "$prefix/node_modules"
  mkdir -p "$prefix"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" \
    "@graphql-inspector/cli@$INSPECTOR_VERSION" "graphql@$GRAPHQL_JS_VERSION" >&2
}

mkdir -p "$root/.tools"
if command -v flock >/dev/null; then
  # One install at a time (CI's step and the Go test may both get here).
  exec 9>"$root/.tools/graphql-inspector.lock"
  flock 9
  install_inspector
  flock -u 9
else
  install_inspector
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The Go half (latest release, CHANGELOG matching) is built once per run.
go build -o "$work/schemacheck" ./internal/schemaversion/cmd/schemacheck

baseline="${1:-$("$work/schemacheck" latest schema/released)}"
schema="${2:-schema/schema.snapshot.graphql}"
changelog="${3:-CHANGELOG.md}"
[ -f "$baseline" ] || die "no baseline schema $baseline"
[ -f "$schema" ] || die "no schema $schema (go test ./internal/schemaversion -update writes it)"
[ -f "$changelog" ] || die "no changelog $changelog"

baseline_version="$(basename "$baseline" .graphql)"
echo "schema-check: graphql-inspector diff $baseline $schema"
# Both sides as clients see them (introspected): a release frozen by an older printer (which showed
# uses of @auth, which introspection does not) then compares like with like.
"$work/schemacheck" introspect "$baseline" >"$work/baseline.graphql"
"$work/schemacheck" introspect "$schema" >"$work/schema.graphql"

# graphql-inspector prints every change (✖ breaking, ⚠ dangerous, ✔ safe); the completion handler
# writes them as JSON instead of failing on the first breaking change. It is not called when nothing
# changed, so start from an empty diff.
printf '{"breaking":[],"dangerous":[],"safe":[]}\n' >"$work/diff.json"
SCHEMA_DIFF_JSON="$work/diff.json" "$inspector" diff "$work/baseline.graphql" "$work/schema.graphql" \
  --onComplete "$root/scripts/schema-diff-json.cjs"

"$work/schemacheck" check -diff "$work/diff.json" -changelog "$changelog" -baseline "$baseline_version"
