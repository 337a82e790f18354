// GraphiQL as a person uses it, in headless Chromium, with every request that would leave
// 127.0.0.1 refused: the page must load, show the example operations and run them, the
// subscription included (graphql-ws), from what the binary serves alone.
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { BASE, createTasks, withTimeout } from './lib.mjs';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

test('GraphiQL works offline: the examples show and run, subscriptions included', { skip: !existsSync(executablePath) && `no Chromium at ${executablePath}`, timeout: 120_000 }, async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const outside = [];
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname !== '127.0.0.1') {
        outside.push(url.href);
        return route.abort();
      }
      return route.continue();
    });
    const page = await context.newPage();
    const problems = [];
    const sockets = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
    page.on('websocket', (ws) => sockets.push(ws.url()));

    await page.goto(`${BASE}/`);
    // The editor shows the examples (CodeMirror renders only the lines in view: read its value).
    const queryEditor = page.locator('.graphiql-query-editor .CodeMirror');
    await queryEditor.getByText('mutation SignUp').first().waitFor({ timeout: 20_000 });
    const document = await queryEditor.evaluate((el) => el.CodeMirror.getValue());
    for (const op of ['mutation SignUp', 'query MyTasks', 'mutation CreateTask', 'mutation FinishTask', 'subscription TaskChanged', '"Authorization": "Bearer <accessToken>"']) {
      assert.ok(document.includes(op), `the editor shows ${op}`);
    }
    const headersEditor = page.locator('.graphiql-editor-tool .CodeMirror').nth(1);
    assert.match(await headersEditor.innerText(), /"Authorization": ""/, 'the headers editor has the Authorization hint');

    const response = page.locator('.graphiql-response');
    // run picks an operation from the execute button's menu and waits for the response pane.
    async function run(operation, until) {
      await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).click();
      await page.getByRole('menuitem', { name: operation }).click();
      await response.getByText(until).first().waitFor({ timeout: 20_000 });
      return response.innerText();
    }
    // Sign up with an address of its own; the answer's token goes into the headers editor.
    const email = `browser-${Date.now()}@example.com`;
    await page.locator('.graphiql-editor-tool .CodeMirror').first().evaluate((el, vars) => el.CodeMirror.setValue(vars), JSON.stringify({ email }));
    await page.getByRole('button', { name: 'Variables' }).click().catch(() => {});
    const signUp = await run('SignUp', 'accessToken');
    const token = /"accessToken": "([^"]+)"/.exec(signUp)?.[1];
    assert.ok(token, `SignUp answered ${signUp}`);
    await page.getByRole('button', { name: 'Headers' }).click();
    await headersEditor.evaluate((el, t) => el.CodeMirror.setValue(JSON.stringify({ Authorization: `Bearer ${t}` }, null, 2)), token);

    await run('CreateTask', '"title": "Write the report"');
    await run('MyTasks', '"totalCount": 1');

    // The subscription stays open; a change made elsewhere shows up in the response pane.
    await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).click();
    await page.getByRole('menuitem', { name: 'TaskChanged' }).click();
    // The socket opens when the subscription starts: create tasks until the pane shows one.
    const created = response.getByText('"kind": "CREATED"').first();
    await withTimeout(
      (async () => {
        for (let i = 0; ; i++) {
          await createTasks(token, [`from elsewhere ${i}`]);
          if (await created.waitFor({ timeout: 500 }).then(() => true, () => false)) return;
        }
      })(),
      20_000,
      'TaskChanged in GraphiQL',
    );
    assert.match(await response.innerText(), /from elsewhere/);
    assert.ok(sockets.some((u) => u.startsWith(BASE.replace('http', 'ws'))), `the subscription used a websocket to this server: ${sockets}`);
    assert.deepEqual(outside, [], 'no request left 127.0.0.1');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
