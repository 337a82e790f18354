// Shared by the conformance tests: where the server is, and helpers that talk to it without any
// client library (so a failing client is never hidden by a failing helper).
import { randomBytes } from 'node:crypto';

export const BASE = process.env.TASKGRAPH_URL;
if (!BASE) throw new Error('TASKGRAPH_URL is not set: run the suite through clients/conformance/conformance_test.go (or set it to a running server)');
export const GRAPHQL = `${BASE}/graphql`;
export const WS = GRAPHQL.replace(/^http/, 'ws');
export const PASSWORD = 'correct horse battery';

export function uniqueEmail(name = 'user') {
  return `${name}-${randomBytes(6).toString('hex')}@example.com`;
}

// post sends one operation with fetch and returns {status, headers, body}.
export async function post(query, variables, { token, headers = {}, base = BASE } = {}) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

// signUp registers a user with plain fetch and returns {email, accessToken, refreshToken, id}.
export async function signUp(name = 'Ada') {
  const email = uniqueEmail(name.toLowerCase());
  const { body } = await post(
    `mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }`,
    { input: { name, email, password: PASSWORD } },
  );
  if (body.errors) throw new Error(`register: ${JSON.stringify(body.errors)}`);
  const r = body.data.register;
  return { email, accessToken: r.accessToken, refreshToken: r.refreshToken, id: r.user.id };
}

export async function createTasks(token, titles) {
  const ids = [];
  for (const title of titles) {
    const { body } = await post(
      `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }`,
      { input: { title } },
      { token },
    );
    if (body.errors) throw new Error(`createTask: ${JSON.stringify(body.errors)}`);
    ids.push(body.data.createTask.task.id);
  }
  return ids;
}

// codeOf returns the extensions.code of the first GraphQL error inside any client's error.
export function codesOf(err) {
  const errors = err?.errors ?? err?.graphQLErrors ?? [];
  return errors.map((e) => e.extensions?.code);
}

// withTimeout fails a promise that takes longer than ms.
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}
