// Completion handler for `graphql-inspector diff --onComplete` (see scripts/schema-check.sh).
// graphql-inspector has no JSON output of its own; this writes every change it found, grouped by
// criticality, to the file named by SCHEMA_DIFF_JSON, and leaves the pass/fail decision to
// `go run ./internal/schemaversion/cmd/schemacheck`, which also reads CHANGELOG.md.
'use strict';
const fs = require('fs');

function pick(change) {
  return {
    type: change.type,
    path: change.path || '',
    message: change.message,
    reason: (change.criticality && change.criticality.reason) || '',
  };
}

module.exports = function onComplete({ breakingChanges, dangerousChanges, nonBreakingChanges }) {
  const out = process.env.SCHEMA_DIFF_JSON;
  if (!out) {
    throw new Error('SCHEMA_DIFF_JSON is not set: run this through scripts/schema-check.sh');
  }
  const report = {
    breaking: breakingChanges.map(pick),
    dangerous: dangerousChanges.map(pick),
    safe: nonBreakingChanges.map(pick),
  };
  fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
};
