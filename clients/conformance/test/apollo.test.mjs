// Apollo Client 4 as its documentation sets it up: an auth link, an ErrorLink that refreshes the
// access token on UNAUTHENTICATED, automatic persisted queries, relayStylePagination, @defer over
// multipart/mixed and graphql-ws.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { from, mergeMap } from 'rxjs';
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { ErrorLink } from '@apollo/client/link/error';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { relayStylePagination } from '@apollo/client/utilities';
import { Defer20220824Handler } from '@apollo/client/incremental';
import { BASE, GRAPHQL, PASSWORD, WS, codesOf, createTasks, post, signUp, uniqueEmail, withTimeout } from './lib.mjs';

// A session as an app keeps it: the tokens, and a refresh that swaps them.
function session(base = BASE) {
  const s = {
    accessToken: '',
    refreshToken: '',
    refreshes: 0,
    async refresh() {
      s.refreshes++;
      const res = await fetch(`${base}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
        body: JSON.stringify({
          query: 'mutation($input: RefreshTokenInput!) { refreshToken(input: $input) { accessToken refreshToken } }',
          variables: { input: { refreshToken: s.refreshToken } },
        }),
      });
      const body = await res.json();
      if (body.errors) throw new Error(`refresh: ${JSON.stringify(body.errors)}`);
      s.accessToken = body.data.refreshToken.accessToken;
      s.refreshToken = body.data.refreshToken.refreshToken;
    },
  };
  return s;
}

// The links of Apollo's authentication and error-handling guides. requests records what went out.
function apollo(s, { base = BASE, persisted = false, requests = [] } = {}) {
  const auth = new SetContextLink(({ headers }) => ({
    headers: { ...headers, authorization: s.accessToken ? `Bearer ${s.accessToken}` : '' },
  }));
  const refresh = new ErrorLink(({ error, operation, forward }) => {
    if (CombinedGraphQLErrors.is(error) && error.errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED') && s.refreshToken) {
      return from(s.refresh()).pipe(mergeMap(() => forward(operation)));
    }
  });
  const http = new HttpLink({
    uri: `${base}/graphql`,
    fetch: async (uri, init) => {
      requests.push({ headers: { ...init.headers }, body: init.body ? JSON.parse(init.body) : null });
      return fetch(uri, init);
    },
  });
  const links = [refresh, auth];
  if (persisted) links.push(new PersistedQueryLink({ sha256: (q) => createHash('sha256').update(q).digest('hex') }));
  links.push(http);
  return new ApolloClient({
    link: ApolloLink.from(links),
    cache: new InMemoryCache({
      typePolicies: { Query: { fields: { tasks: relayStylePagination(['filter', 'orderBy']) } } },
    }),
    incrementalHandler: new Defer20220824Handler(),
  });
}

const REGISTER = gql`
  mutation Register($input: RegisterInput!) {
    register(input: $input) { accessToken refreshToken user { id name } }
  }
`;
const LOGIN = gql`
  mutation Login($input: LoginInput!) {
    login(input: $input) { accessToken refreshToken user { id name } }
  }
`;
const ME = gql`
  query Me { me { id name email } }
`;

test('sign-up and sign-in through an auth link that sends an empty Authorization header when signed out', async () => {
  const s = session();
  const requests = [];
  const client = apollo(s, { requests });
  const email = uniqueEmail('ada');
  const { data } = await client.mutate({ mutation: REGISTER, variables: { input: { name: 'Ada', email, password: PASSWORD } } });
  assert.equal(requests[0].headers.authorization, '', 'signed out, the link sends an empty header');
  assert.equal(data.register.user.name, 'Ada');

  const login = await client.mutate({ mutation: LOGIN, variables: { input: { email, password: PASSWORD } } });
  s.accessToken = login.data.login.accessToken;
  const me = await client.query({ query: ME });
  assert.equal(me.data.me.email, email);
  assert.match(requests.at(-1).headers.authorization, /^Bearer /);
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

test('pages forward and backward with relayStylePagination', async () => {
  const user = await signUp('Pager');
  const ids = await createTasks(user.accessToken, ['t1', 't2', 't3', 't4', 't5']);
  const s = session();
  s.accessToken = user.accessToken;
  const client = apollo(s);

  const titles = (r) => r.data.tasks.edges.map((e) => e.node.title);
  // Forward: each page fetched from the server, merged into one list by the type policy (which
  // ignores the paging arguments, so a page must be fetched with network-only or fetchMore).
  const first = await client.query({ query: TASKS, variables: { first: 2 }, fetchPolicy: 'network-only' });
  assert.deepEqual(titles(first), ['t1', 't2']);
  assert.equal(first.data.tasks.pageInfo.hasNextPage, true);
  const more = await client.query({ query: TASKS, variables: { first: 2, after: first.data.tasks.pageInfo.endCursor }, fetchPolicy: 'network-only' });
  assert.deepEqual(more.data.tasks.edges.map((e) => e.node.id), ids.slice(0, 4), 'relayStylePagination appended the second page');
  assert.equal(more.data.tasks.pageInfo.hasNextPage, true);

  // Backward from the end, in a cache of its own: the last two, then the two before them.
  const back = apollo(s);
  const tail = await back.query({ query: TASKS, variables: { last: 2 }, fetchPolicy: 'network-only' });
  assert.deepEqual(titles(tail), ['t4', 't5']);
  assert.equal(tail.data.tasks.pageInfo.hasPreviousPage, true);
  const before = await back.query({ query: TASKS, variables: { last: 2, before: tail.data.tasks.pageInfo.startCursor }, fetchPolicy: 'network-only' });
  assert.deepEqual(titles(before), ['t2', 't3', 't4', 't5'], 'relayStylePagination prepended the page before');
  assert.equal(before.data.tasks.totalCount, 5);
});

const UPDATE = gql`
  mutation Update($id: ID!, $input: UpdateTaskInput!) {
    updateTask(id: $id, input: $input) { task { id title version } }
  }
`;

test('mutation errors reach Apollo with CONFLICT and NOT_FOUND codes', async () => {
  const user = await signUp('Writer');
  const [id] = await createTasks(user.accessToken, ['draft']);
  const s = session();
  s.accessToken = user.accessToken;
  const client = apollo(s);

  const ok = await client.mutate({ mutation: UPDATE, variables: { id, input: { title: 'v2', expectedVersion: 1 } } });
  assert.equal(ok.data.updateTask.task.version, 2);

  await assert.rejects(
    client.mutate({ mutation: UPDATE, variables: { id, input: { title: 'stale', expectedVersion: 1 } } }),
    (err) => CombinedGraphQLErrors.is(err) && codesOf(err).includes('CONFLICT'),
  );
  const other = await signUp('Other');
  const [foreign] = await createTasks(other.accessToken, ['not yours']);
  await assert.rejects(
    client.mutate({ mutation: UPDATE, variables: { id: foreign, input: { title: 'mine now' } } }),
    (err) => CombinedGraphQLErrors.is(err) && codesOf(err).includes('NOT_FOUND'),
  );
  await assert.rejects(
    client.mutate({ mutation: REGISTER, variables: { input: { name: 'Again', email: user.email, password: PASSWORD } } }),
    (err) => CombinedGraphQLErrors.is(err) && codesOf(err).includes('CONFLICT'),
  );
});

test('an expired access token is refreshed by an ErrorLink on UNAUTHENTICATED and the query retried', { timeout: 60_000 }, async () => {
  const base = process.env.TASKGRAPH_SHORT_TTL_URL;
  assert.ok(base, 'TASKGRAPH_SHORT_TTL_URL names a server with a short ACCESS_TOKEN_TTL');
  const ttl = Number(process.env.TASKGRAPH_SHORT_TTL_SECONDS);
  const s = session(base);
  const client = apollo(s, { base });
  const email = uniqueEmail('expiring');
  const reg = await client.mutate({ mutation: REGISTER, variables: { input: { name: 'Exp', email, password: PASSWORD } } });
  s.accessToken = reg.data.register.accessToken;
  s.refreshToken = reg.data.register.refreshToken;
  const before = await client.query({ query: ME, fetchPolicy: 'network-only' });
  assert.equal(before.data.me.email, email);
  assert.equal(s.refreshes, 0);

  // Wait until the server refuses the token (the TTL plus its clock leeway), asking it directly.
  const expired = s.accessToken;
  const deadline = Date.now() + (ttl + 30) * 1000;
  for (;;) {
    const { status, headers, body } = await post('{ me { id } }', undefined, { token: expired, base });
    if (status === 401) {
      assert.match(headers.get('content-type'), /application\/graphql-response\+json/);
      assert.deepEqual(codesOf(body), ['UNAUTHENTICATED']);
      break;
    }
    assert.ok(Date.now() < deadline, 'the access token never expired');
    await new Promise((r) => setTimeout(r, 500));
  }
  const after = await client.query({ query: ME, fetchPolicy: 'network-only' });
  assert.equal(after.data.me.email, email);
  assert.equal(s.refreshes, 1, 'the ErrorLink refreshed once');
  assert.notEqual(s.accessToken, expired);
});

test('automatic persisted queries: the hash first, the document only when the server asks', async () => {
  const user = await signUp('Hasher');
  const s = session();
  s.accessToken = user.accessToken;
  // A document of its own, so its hash is new to the server.
  const alias = `me${randomBytes(4).toString('hex')}`;
  const query = gql(`query PersistedMe { ${alias}: me { id name } }`);
  const firstRequests = [];
  const first = apollo(s, { persisted: true, requests: firstRequests });
  const a = await first.query({ query });
  assert.equal(a.data[alias].id, user.id);
  // Unknown hash: PERSISTED_QUERY_NOT_FOUND, then the full document.
  assert.equal(firstRequests.length, 2);
  assert.equal(firstRequests[0].body.query, undefined);
  assert.ok(firstRequests[1].body.query.includes('PersistedMe'));

  const laterRequests = [];
  const later = apollo(s, { persisted: true, requests: laterRequests });
  const b = await later.query({ query });
  assert.equal(b.data[alias].id, user.id);
  assert.equal(laterRequests.length, 1, 'a known hash runs without the document');
  assert.equal(laterRequests[0].body.query, undefined);
});

const DEFERRED = gql`
  query DeferredMe {
    me {
      id
      ... @defer(label: "counts") {
        taskCounts { total done }
      }
    }
  }
`;

// results collects what an ObservableQuery emits until its data carries every deferred field.
function untilComplete(observable, done) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const seen = [];
      const sub = observable.subscribe({
        next(r) {
          seen.push(r);
          if (r.error) {
            sub.unsubscribe();
            reject(r.error);
          } else if (done(r)) {
            sub.unsubscribe();
            resolve(seen);
          }
        },
        error: reject,
      });
    }),
    10_000,
    '@defer',
  );
}

test('@defer over multipart/mixed: the deferred fragment arrives after the rest', async () => {
  const user = await signUp('Deferrer');
  await createTasks(user.accessToken, ['a', 'b']);
  const s = session();
  s.accessToken = user.accessToken;
  const requests = [];
  const client = apollo(s, { requests });
  const seen = await untilComplete(
    client.watchQuery({ query: DEFERRED, fetchPolicy: 'network-only' }),
    (r) => r.dataState === 'complete',
  );
  const last = seen.at(-1);
  assert.equal(last.data.me.id, user.id);
  assert.deepEqual(last.data.me.taskCounts, { __typename: 'TaskCounts', total: 2, done: 0 });
  assert.ok(seen.some((r) => r.dataState === 'streaming'), `saw a streaming state first: ${JSON.stringify(seen.map((r) => r.dataState))}`);
  assert.match(requests[0].headers.accept, /multipart\/mixed/);
});

test('subscriptions and @defer over graphql-ws through GraphQLWsLink', async () => {
  const user = await signUp('Watcher');
  const wsClient = createClient({
    url: WS,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${user.accessToken}` },
    retryAttempts: 0,
  });
  try {
    const client = new ApolloClient({
      link: new GraphQLWsLink(wsClient),
      cache: new InMemoryCache(),
      incrementalHandler: new Defer20220824Handler(),
    });
    const events = [];
    const gotCreate = withTimeout(
      new Promise((resolve, reject) => {
        const sub = client
          .subscribe({ query: gql`subscription { taskChanged { kind task { id title } } }` })
          .subscribe({
            next: (r) => {
              events.push(r.data.taskChanged);
              if (r.data.taskChanged.kind === 'CREATED') {
                sub.unsubscribe();
                resolve();
              }
            },
            error: reject,
          });
      }),
      10_000,
      'taskChanged over graphql-ws',
    );
    // The subscription is live once the server acknowledged it; keep creating until one arrives.
    const creating = (async () => {
      for (let i = 0; events.length === 0 && i < 40; i++) {
        await createTasks(user.accessToken, [`live ${i}`]);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    await gotCreate;
    await creating;
    assert.equal(events[0].kind, 'CREATED');
    assert.match(events[0].task.title, /^live /);

    const seen = await untilComplete(client.watchQuery({ query: DEFERRED, fetchPolicy: 'network-only' }), (r) => r.dataState === 'complete');
    assert.equal(seen.at(-1).data.me.taskCounts.total >= 1, true);
  } finally {
    await wsClient.dispose();
  }
});
