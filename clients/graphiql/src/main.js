// The GraphiQL page Taskgraph serves at / (built by build.mjs into internal/graphiql/assets).
// Everything it needs is in this bundle: it loads nothing from other origins.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import { parse } from 'graphql';
import 'graphiql/style.css';

// The server writes the endpoint and the example operations into the page (internal/graphiql).
const config = JSON.parse(document.getElementById('graphiql-config').textContent);
const url = new URL(config.endpoint, window.location.href);
const wsURL = new URL(url);
wsURL.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

// Queries and mutations over HTTP, with the headers of the headers editor; @defer answers arrive
// as multipart/mixed.
const overHTTP = createGraphiQLFetcher({ url: url.toString() });

// Subscriptions over graphql-ws. The server authenticates a websocket once, in connection_init, so
// there is one connection per Authorization value of the headers editor.
const sockets = new Map();
function socketFor(authorization) {
  let client = sockets.get(authorization);
  if (!client) {
    client = createClient({
      url: wsURL.toString(),
      connectionParams: authorization ? { Authorization: authorization } : {},
      lazy: true,
      retryAttempts: 0,
    });
    sockets.set(authorization, client);
  }
  return client;
}

function operationType(params, opts) {
  let doc = opts && opts.documentAST;
  if (!doc) {
    try {
      doc = parse(params.query);
    } catch {
      return 'query';
    }
  }
  const ops = doc.definitions.filter((d) => d.kind === 'OperationDefinition');
  const op = ops.find((d) => d.name && d.name.value === params.operationName) || (ops.length === 1 ? ops[0] : null);
  return op ? op.operation : 'query';
}

function header(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) {
    if (k.toLowerCase() === name) return String(v);
  }
  return '';
}

function describe(err) {
  if (err && typeof err.code === 'number') {
    // A CloseEvent: 4403 is the server refusing the access token.
    const hint = err.code === 4403 ? ' (put a valid access token in the Authorization header)' : '';
    return `the websocket closed: ${err.code} ${err.reason || ''}${hint}`.trim();
  }
  if (Array.isArray(err)) return err.map((e) => e.message).join('; ');
  return err && err.message ? err.message : String(err);
}

async function* subscribe(client, payload) {
  try {
    for await (const result of client.iterate(payload)) yield result;
  } catch (err) {
    yield { errors: [{ message: describe(err) }] };
  }
}

function fetcher(params, opts) {
  if (operationType(params, opts) === 'subscription') {
    const client = socketFor(header(opts && opts.headers, 'authorization'));
    return subscribe(client, { query: params.query, variables: params.variables, operationName: params.operationName });
  }
  return overHTTP(params, opts);
}

createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: config.query,
    defaultHeaders: config.headers,
    defaultTabs: [{ query: config.query, variables: config.variables, headers: config.headers }],
    defaultEditorToolsVisibility: 'headers',
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    inputValueDeprecation: true,
  }),
);
