// The schema a client introspects is the committed snapshot: a consumer diffing the two (a schema
// registry, codegen in CI) sees no change.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  buildClientSchema,
  buildSchema,
  findBreakingChanges,
  findDangerousChanges,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
} from 'graphql';
import { GRAPHQL } from './lib.mjs';

test('live introspection equals schema/schema.snapshot.graphql', async () => {
  const res = await fetch(GRAPHQL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({
      query: getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true, oneOf: true }),
    }),
  });
  const body = await res.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  const live = buildClientSchema(body.data);
  const snapshot = buildSchema(await readFile(new URL('../../../schema/schema.snapshot.graphql', import.meta.url), 'utf8'));

  assert.deepEqual(findBreakingChanges(snapshot, live), []);
  assert.deepEqual(findDangerousChanges(snapshot, live), []);
  assert.equal(printSchema(lexicographicSortSchema(live)), printSchema(lexicographicSortSchema(snapshot)));
  assert.ok(live.getDirective('defer'), 'introspection lists @defer');
  assert.ok(snapshot.getDirective('defer'), 'the snapshot lists @defer');
  assert.equal(live.description, snapshot.description);
  assert.ok(snapshot.description?.startsWith('Taskgraph'));
});
