// urql 6 with Graphcache (relayPagination), fetchExchange and subscriptionExchange over graphql-ws
// and graphql-sse, as their documentation sets them up.
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient as createWSClient } from 'graphql-ws';
import { createClient as createSSEClient } from 'graphql-sse';
import { Client, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { cacheExchange } from '@urql/exchange-graphcache';
import { relayPagination } from '@urql/exchange-graphcache/extras';
import { GRAPHQL, PASSWORD, WS, codesOf, createTasks, signUp, uniqueEmail, withTimeout } from './lib.mjs';

function urql(auth, extra = []) {
  return new Client({
    url: GRAPHQL,
    exchanges: [
      cacheExchange({ keys: { TaskCounts: () => null, PageInfo: () => null, AuthPayload: () => null }, resolvers: { Query: { tasks: relayPagination() } } }),
      ...extra,
      fetchExchange,
    ],
    // The documented auth pattern: the header is empty while signed out.
    fetchOptions: () => ({ headers: { authorization: auth.token ? `Bearer ${auth.token}` : '' } }),
    preferGetMethod: false,
  });
}

test('sign-up with an empty Authorization header, then queries as the user', async () => {
  const auth = { token: '' };
  const client = urql(auth);
  const email = uniqueEmail('urql');
  const reg = await client
    .mutation(gql`mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id name } } }`, {
      input: { name: 'Urq', email, password: PASSWORD },
    })
    .toPromise();
  assert.equal(reg.error, undefined, String(reg.error));
  auth.token = reg.data.register.accessToken;
  const me = await client.query(gql`{ me { id email } }`, {}, { requestPolicy: 'network-only' }).toPromise();
  assert.equal(me.data.me.email, email);
});

const TASKS = gql`
  query Tasks($first: Int, $after: String, $last: Int, $before: String) {
    tasks(first: $first, after: $after, last: $last, before: $before, orderBy: { field: CREATED_AT, direction: ASC }) {
      totalCount
      edges { cursor node { id title } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
`;

test('pages forward and backward with Graphcache relayPagination', async () => {
  const user = await signUp('UrqlPager');
  await createTasks(user.accessToken, ['t1', 't2', 't3', 't4', 't5']);
  const titles = (r) => r.data.tasks.edges.map((e) => e.node.title);

  const forward = urql({ token: user.accessToken });
  const p1 = await forward.query(TASKS, { first: 2 }).toPromise();
  assert.deepEqual(titles(p1), ['t1', 't2']);
  const p2 = await forward.query(TASKS, { first: 2, after: p1.data.tasks.pageInfo.endCursor }).toPromise();
  assert.deepEqual(titles(p2), ['t1', 't2', 't3', 't4'], 'relayPagination merged the next page');
  assert.equal(p2.data.tasks.pageInfo.hasNextPage, true);

  const backward = urql({ token: user.accessToken });
  const b1 = await backward.query(TASKS, { last: 2 }).toPromise();
  assert.deepEqual(titles(b1), ['t4', 't5']);
  const b2 = await backward.query(TASKS, { last: 2, before: b1.data.tasks.pageInfo.startCursor }).toPromise();
  assert.deepEqual(titles(b2), ['t2', 't3', 't4', 't5'], 'relayPagination merged the page before');
  assert.equal(b2.data.tasks.pageInfo.hasPreviousPage, true);
  assert.equal(b2.data.tasks.totalCount, 5);
});

test('mutation errors carry CONFLICT and NOT_FOUND in CombinedError', async () => {
  const user = await signUp('UrqlWriter');
  const [id] = await createTasks(user.accessToken, ['draft']);
  const client = urql({ token: user.accessToken });
  const UPDATE = gql`mutation($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { task { id version } } }`;
  const ok = await client.mutation(UPDATE, { id, input: { title: 'v2', expectedVersion: 1 } }).toPromise();
  assert.equal(ok.data.updateTask.task.version, 2);
  const stale = await client.mutation(UPDATE, { id, input: { title: 'v3', expectedVersion: 1 } }).toPromise();
  assert.deepEqual(codesOf(stale.error), ['CONFLICT']);
  const missing = await client.mutation(UPDATE, { id: 'VGFzazowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA', input: { title: 'x' } }).toPromise();
  assert.deepEqual(codesOf(missing.error), ['NOT_FOUND']);
});

test('@defer through fetchExchange: the initial result, then the deferred fragment', async () => {
  const user = await signUp('UrqlDefer');
  await createTasks(user.accessToken, ['a']);
  const client = urql({ token: user.accessToken });
  const results = await withTimeout(
    new Promise((resolve, reject) => {
      const seen = [];
      const { unsubscribe } = client
        .query(gql`{ me { id ... @defer { taskCounts { total } } } }`, {}, { requestPolicy: 'network-only' })
        .subscribe((r) => {
          seen.push(r);
          if (r.error) reject(r.error);
          if (r.hasNext === false || (r.data?.me?.taskCounts && !r.hasNext)) {
            unsubscribe();
            resolve(seen);
          }
        });
    }),
    10_000,
    'urql @defer',
  );
  assert.ok(results.length >= 2, `one result per payload, got ${results.length}`);
  assert.equal(results[0].hasNext, true);
  assert.equal(results.at(-1).data.me.taskCounts.total, 1);
});

// Subscribes to taskChanged through client and creates tasks until an event arrives.
async function firstTaskEvent(client, token) {
  let event;
  const got = withTimeout(
    new Promise((resolve, reject) => {
      const { unsubscribe } = client.subscription(gql`subscription { taskChanged { kind task { title } } }`, {}).subscribe((r) => {
        if (r.error) return reject(r.error);
        event = r.data.taskChanged;
        unsubscribe();
        resolve(event);
      });
    }),
    10_000,
    'taskChanged',
  );
  for (let i = 0; !event && i < 40; i++) {
    await createTasks(token, [`live ${i}`]);
    await Promise.race([got.catch(() => {}), new Promise((r) => setTimeout(r, 250))]);
  }
  return got;
}

test('subscriptions through subscriptionExchange over graphql-ws', async () => {
  const user = await signUp('UrqlWS');
  const ws = createWSClient({ url: WS, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${user.accessToken}` }, retryAttempts: 0 });
  try {
    const client = urql({ token: user.accessToken }, [
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query || '' }, sink) }),
        }),
      }),
    ]);
    const event = await firstTaskEvent(client, user.accessToken);
    assert.equal(event.kind, 'CREATED');
  } finally {
    await ws.dispose();
  }
});

test('subscriptions through subscriptionExchange over graphql-sse', async () => {
  const user = await signUp('UrqlSSE');
  const sse = createSSEClient({ url: GRAPHQL, headers: { Authorization: `Bearer ${user.accessToken}` }, retryAttempts: 0 });
  try {
    const client = urql({ token: user.accessToken }, [
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: sse.subscribe({ ...request, query: request.query || '' }, sink) }),
        }),
      }),
    ]);
    const event = await firstTaskEvent(client, user.accessToken);
    assert.equal(event.kind, 'CREATED');
  } finally {
    sse.dispose();
  }
});
