// graphql-ws and graphql-sse on their own: subscriptions, @defer, and refusals a client can read.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient as createWSClient } from 'graphql-ws';
import { createClient as createSSEClient } from 'graphql-sse';
import { GRAPHQL, WS, createTasks, signUp, withTimeout } from './lib.mjs';

async function collect(iterator, ms, what) {
  const out = [];
  await withTimeout(
    (async () => {
      for await (const r of iterator) out.push(r);
    })(),
    ms,
    what,
  );
  return out;
}

const DEFERRED = '{ me { id ... @defer(label: "counts") { taskCounts { total } } } }';

function assertIncremental(results) {
  assert.ok(results.length >= 2, `an initial and a later payload, got ${JSON.stringify(results)}`);
  assert.equal(results[0].hasNext, true);
  const last = results.at(-1);
  assert.equal(last.hasNext, false);
  assert.deepEqual(last.incremental[0].path, ['me']);
  assert.equal(last.incremental[0].label, 'counts');
  assert.equal(last.incremental[0].data.taskCounts.total, 1);
}

test('graphql-sse: @defer as next events, a refusal as a readable error event', async () => {
  const user = await signUp('SSE');
  await createTasks(user.accessToken, ['x']);
  const client = createSSEClient({ url: GRAPHQL, headers: { Authorization: `Bearer ${user.accessToken}` }, retryAttempts: 0 });
  try {
    assertIncremental(await collect(client.iterate({ query: DEFERRED }), 10_000, 'graphql-sse @defer'));
  } finally {
    client.dispose();
  }
  // A bad token: the protocol has refusals come as events, so the client reads the code (a 401
  // would reach it as "Server responded with 401" and be retried).
  const refused = createSSEClient({ url: GRAPHQL, headers: { Authorization: 'Bearer not-a-token' }, retryAttempts: 3 });
  try {
    const results = await collect(refused.iterate({ query: 'subscription { taskChanged { kind } }' }), 10_000, 'graphql-sse refusal');
    assert.equal(results.length, 1);
    assert.equal(results[0].errors[0].extensions.code, 'UNAUTHENTICATED');
  } finally {
    refused.dispose();
  }
});

test('graphql-ws: @defer as next messages, a bad token closes with 4403', async () => {
  const user = await signUp('WS');
  await createTasks(user.accessToken, ['x']);
  const client = createWSClient({ url: WS, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${user.accessToken}` }, retryAttempts: 0 });
  try {
    assertIncremental(await collect(client.iterate({ query: DEFERRED }), 10_000, 'graphql-ws @defer'));
  } finally {
    await client.dispose();
  }
  const refused = createWSClient({ url: WS, webSocketImpl: WebSocket, connectionParams: { Authorization: 'Bearer not-a-token' }, retryAttempts: 0 });
  try {
    await assert.rejects(collect(refused.iterate({ query: 'subscription { taskChanged { kind } }' }), 10_000, 'graphql-ws refusal'), (err) => err.code === 4403);
  } finally {
    await refused.dispose();
  }
});
