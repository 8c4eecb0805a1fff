// The console in a real browser: Debian's Chromium, headless, driven by playwright-core
// (which never downloads a browser of its own). `e2e-ui/run.py` starts Herald and runs
// this with:
//   HERALD_UI_API          the api's base URL
//   HERALD_UI_KEY          an accepted API key
//   HERALD_UI_FAIL_SINK    a sink answering every delivery 400 (a failed delivery)
//   HERALD_UI_SCREENSHOTS  where to save the screenshots
//   HERALD_UI_DOCS         optional: also save the README's screenshots there
// Prints `ok   ...` / `FAIL ...` per check and `N passed, M failed` last; exits 1 on
// any failure.

import { chromium } from 'playwright-core';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const API = need('HERALD_UI_API');
const KEY = need('HERALD_UI_KEY');
const FAIL_SINK = need('HERALD_UI_FAIL_SINK');
const SHOTS = need('HERALD_UI_SCREENSHOTS');
const DOCS = process.env.HERALD_UI_DOCS;
const CHROMIUM = process.env.HERALD_UI_CHROMIUM ?? '/usr/bin/chromium';
const RUN = randomBytes(3).toString('hex');
const ANA = `ana_${RUN}`;
const BO = `bo_${RUN}`;
const SHOP = `UiShop_${RUN}`;
const LIVE_WITHIN_MS = 2000;

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.log(`FAIL setup: ${name} is not set (run e2e-ui/run.py)`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  return value;
}

// The whole run may not hang: a stuck browser or server fails it.
const watchdog = setTimeout(() => {
  console.log('FAIL e2e-ui: the browser test took over 4 minutes');
  report();
  process.exit(1);
}, 240_000);

// ------------------------------------------------------------------------ checks

const results = { passed: 0, failed: 0 };
let currentPage = null; // screenshotted when a check fails

/** One named check: `ok` when it completes, `FAIL` with the reason when it throws. */
async function check(name, fn, { fatal = false } = {}) {
  try {
    await fn();
    results.passed += 1;
    console.log(`ok   e2e-ui: ${name}`);
    return true;
  } catch (e) {
    results.failed += 1;
    console.log(`FAIL e2e-ui: ${name}`);
    if (currentPage) {
      const file = join(SHOTS, `failure-${results.failed}.png`);
      await currentPage.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.log(`     (screenshot: ${file})`);
    }
    for (const line of String(e?.stack ?? e).split('\n').slice(0, 6)) console.log(`     ${line}`);
    if (fatal) throw new Error(`stopped after "${name}" failed`);
    return false;
  }
}

function report() {
  console.log(`${results.passed} passed, ${results.failed} failed`);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function eventually(what, fn, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// --------------------------------------------------------------------------- API

async function api(method, path, body, base = API) {
  const headers = { Authorization: `Bearer ${KEY}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) throw new Error(`${method} ${path}: HTTP ${resp.status}: ${text.slice(0, 300)}`);
  return data;
}

async function postScenario(n) {
  const answer = await api('POST', '/api/v1/events', [{
    event_type: 'test_scenario.created',
    event_timestamp: new Date().toISOString(),
    user_id: ANA,
    properties: { test_scenario_id: n, name: `Checkout flow #${n}` },
  }]);
  assert(answer.accepted === 1, `event not accepted: ${JSON.stringify(answer)}`);
  return answer.event_ids[0];
}

async function setUp() {
  // ana follows test-scenario creations in her inbox (in_app, seed 003).
  await api('PUT', `/api/v1/users/${ANA}`, { email: `${ANA}@example.com` });
  await api('PUT', `/api/v1/users/${ANA}/subscriptions/test_scenario.created`, { enabled: true });
  // bo's own webhook answers 400: an alert to his shop fails at once (seed 002).
  await api('PUT', `/api/v1/topics/${SHOP}`, {});
  await api('PUT', `/api/v1/users/${BO}`, {
    email: `${BO}@example.com`, webhook_url: `${FAIL_SINK}/hooks/${BO}`, topics: [SHOP],
  });
  // A history before the page opens: a payment failing twice the same day (one email
  // sent, the second suppressed by the once-a-day debounce, and on the third attempt
  // a private alert for the operators), then a test scenario in her inbox.
  for (const attempt of [1, 3]) {
    await postEvent('payment_failed', {
      amount: 14.25, attempt_number: attempt, failure_reason: 'INSUFFICIENT_FUNDS',
    });
    await eventually(`payment attempt ${attempt} routed`, async () => {
      const audit = await api('GET', `/audit/${ANA}`);
      return audit.notification_history.length >= (attempt === 1 ? 1 : 3)
        && audit.notification_history.every((n) => n.status !== 'pending');
    });
  }
  await postScenario(1);
  await eventually('two notifications in the inbox', async () => {
    const page = await api('GET', `/api/v1/users/${ANA}/notifications`);
    return page.unread_count === 2;
  });
}

async function postEvent(eventType, properties) {
  const answer = await api('POST', '/api/v1/events', [{
    event_type: eventType, event_timestamp: new Date().toISOString(), user_id: ANA, properties,
  }]);
  assert(answer.accepted === 1, `event not accepted: ${JSON.stringify(answer)}`);
}

async function failBo() {
  const alert = await api('POST', '/webhooks/alerts', {
    alert_uuid: crypto.randomUUID(), location: SHOP, label: 'theft',
    url: 'https://media.example/clip.mp4', time_spotted: Date.now() / 1000,
  });
  return eventually('the alert to fail', async () => {
    const { items } = await api('GET', `/api/v1/notifications?event_id=${alert.event_id}`);
    const failed = items.find((n) => n.user_id === BO && n.status === 'failed');
    return failed?.id;
  }, 20000);
}

// ---------------------------------------------------------------------- browser

async function shot(page, name, docsName) {
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
  if (DOCS && docsName) {
    await mkdir(DOCS, { recursive: true });
    await page.screenshot({ path: join(DOCS, docsName), fullPage: true });
  }
}

async function badge(page) {
  return Number(await page.locator('#unread-badge').getAttribute('data-count'));
}

async function main() {
  await mkdir(SHOTS, { recursive: true });
  const profile = await mkdtemp(join(tmpdir(), 'herald-e2e-ui-'));
  let context;
  try {
    await check('the API is up and the test people exist', setUp, { fatal: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1180, height: 900 },
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(10000);
    currentPage = page;
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    // Offline: nothing but the api's own origin may be requested.
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(API)) foreign.push(r.url()); });

    await check('the console asks for the API key once and keeps it', async () => {
      await page.goto(`${API}/ui/`);
      await page.getByLabel('API key').fill('not-the-key');
      await page.getByRole('button', { name: 'Open console' }).click();
      await page.getByText('The API refused this key.').waitFor();
      await page.getByLabel('API key').fill(KEY);
      await page.getByRole('button', { name: 'Open console' }).click();
      await page.getByRole('heading', { level: 1, name: 'People' }).waitFor();
      await page.reload();
      await page.getByRole('heading', { level: 1, name: 'People' }).waitFor();
      assert(await page.getByLabel('API key').count() === 0, 'asked for the key again');
      // The wrong key's 401 is logged by the browser; only what follows must be clean.
      consoleErrors.length = 0;
    }, { fatal: true });

    await check("a person's page shows the inbox, its unread badge and a live stream", async () => {
      await page.getByLabel('Person (user id)').fill(ANA);
      await page.getByLabel('Person (user id)').press('Enter');
      await page.getByRole('heading', { level: 1, name: `Person ${ANA}` }).waitFor();
      await eventually('two unread', async () => await badge(page) === 2);
      await page.locator('#live-state[data-state="live"]').waitFor();
      assert(await page.locator('#inbox-list > li').count() === 2, 'two items');
    }, { fatal: true });

    await check(`a notification posted over the API appears without a reload within ${LIVE_WITHIN_MS} ms`, async () => {
      await page.evaluate(() => { window.__sameDocument = true; });
      const started = Date.now();
      await postScenario(2);
      await page.locator('#inbox-list > li').nth(2).waitFor({ timeout: LIVE_WITHIN_MS });
      await page.waitForFunction(() => document.querySelector('#unread-badge')?.dataset.count === '3',
        null, { timeout: Math.max(100, LIVE_WITHIN_MS - (Date.now() - started)) });
      const elapsed = Date.now() - started;
      assert(elapsed <= LIVE_WITHIN_MS, `took ${elapsed} ms`);
      assert(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
      const newest = await page.locator('#inbox-list > li').first().innerText();
      assert(newest.includes('Checkout flow #2') || newest.includes('TEST_SCENARIO_CREATED'), newest);
      console.log(`     (appeared after ${elapsed} ms)`);
    });

    await check('the audit trail shows events, notifications with status and reason, and attempts', async () => {
      const notes = page.locator('#audit-notifications tbody tr');
      await eventually('five notifications in the audit', async () => await notes.count() >= 5);
      await eventually('four events in the audit', async () => await page.locator('#audit-events tbody tr').count() >= 4);
      const suppressed = notes.filter({ hasText: 'suppressed' });
      const reason = await suppressed.first().innerText();
      assert(reason.includes('skipped INSUFFICIENT_FUNDS_EMAIL'), `no readable reason: ${reason}`);
      assert(await notes.filter({ hasText: 'HIGH_RISK_ALERT' }).count() === 1, 'the private alert is audited');
      const email = notes.filter({ hasText: 'INSUFFICIENT_FUNDS_EMAIL' }).filter({ has: page.locator('.chip-sent') });
      await email.getByRole('button', { name: 'Details' }).click();
      const attempts = page.locator('#audit-notifications tr.detail tbody tr');
      await attempts.first().waitFor();
      const attempt = await attempts.first().innerText();
      // The email channel speaks SMTP: its attempt records the server's 250.
      assert(attempt.includes('250') && attempt.includes('success'), attempt);
    });

    await shot(page, 'person.png', 'console-person.png');

    await check('marking one read drops the badge, and mark all read clears it', async () => {
      await page.locator('#inbox-list > li').first().getByRole('button', { name: /Mark .* read/ }).click();
      await eventually('badge at 2', async () => await badge(page) === 2, 3000);
      await page.getByRole('button', { name: 'Mark all read' }).click();
      await eventually('badge at 0', async () => await badge(page) === 0, 3000);
      const unread = await api('GET', `/api/v1/users/${ANA}/notifications?unread=true`);
      assert(unread.unread_count === 0, `API still counts ${unread.unread_count} unread`);
    });

    await check('a read mark made elsewhere reaches the open page live', async () => {
      await postScenario(3);
      await eventually('badge at 1', async () => await badge(page) === 1, LIVE_WITHIN_MS + 1000);
      await api('POST', `/api/v1/users/${ANA}/notifications/read-all`, {});
      await eventually('badge at 0', async () => await badge(page) === 0, LIVE_WITHIN_MS + 1000);
    });

    await check('the page is keyboard usable: Tab reaches "Mark all read"', async () => {
      await postScenario(4);
      await eventually('badge at 1', async () => await badge(page) === 1, LIVE_WITHIN_MS + 1000);
      await page.locator('h1').focus();
      let reached = false;
      for (let i = 0; i < 15 && !reached; i += 1) {
        await page.keyboard.press('Tab');
        reached = await page.evaluate(() => document.activeElement?.id === 'read-all');
      }
      assert(reached, 'Mark all read is not reachable with Tab');
      await page.keyboard.press('Enter');
      await eventually('badge at 0', async () => await badge(page) === 0, 3000);
    });

    let failedId;
    await check('a delivery to a webhook answering 400 fails', async () => {
      failedId = await failBo();
    }, { fatal: true });

    await check('the operations page shows queues, the last hour by status, failures and workers', async () => {
      await page.getByRole('link', { name: 'Operations' }).click();
      await page.getByRole('heading', { level: 1, name: 'Operations' }).waitFor();
      await page.locator('#ops-queues dl').waitFor();
      await page.locator('#ops-chart svg[role="img"]').waitFor();
      const label = await page.locator('#ops-chart svg').getAttribute('aria-label');
      assert(/failed [1-9]/.test(label), `chart: ${label}`);
      await page.locator('#ops-workers tbody tr').first().waitFor();
      await page.locator(`#ops-failures tr[data-id="${failedId}"]`).waitFor();
      const row = await page.locator(`#ops-failures tr[data-id="${failedId}"]`).innerText();
      assert(row.includes(BO) && row.includes('400'), row);
    });

    await shot(page, 'operations.png', 'console-operations.png');

    await check('retrying the failed delivery from the console sends it once the webhook recovers', async () => {
      // The receiver is fixed (now answers 200); the operator retries.
      await api('POST', '/control', { status: null }, FAIL_SINK);
      await page.locator(`#ops-failures tr[data-id="${failedId}"]`).getByRole('button', { name: /Retry/ }).click();
      await page.locator(`#ops-failures tr[data-id="${failedId}"]`).getByText('Queued for retry').waitFor();
      const sent = await eventually('the retried delivery sent', async () => {
        const n = await api('GET', `/api/v1/notifications/${failedId}`);
        return n.status === 'sent' && n;
      }, 20000);
      assert(sent.delivery_attempts.length === 2, `attempts: ${JSON.stringify(sent.delivery_attempts)}`);
      await eventually('the row gone from the failures', async () =>
        await page.locator(`#ops-failures tr[data-id="${failedId}"]`).count() === 0, 10000);
    });

    await check("the failed person's audit shows each delivery attempt", async () => {
      await page.goto(`${API}/ui/#/people/${BO}`);
      const row = page.locator('#audit-notifications tbody tr', { hasText: 'SHOP_ALERT' }).first();
      await row.getByRole('button', { name: 'Details' }).click();
      const detail = page.locator('#audit-notifications tr.detail');
      await detail.locator('tbody tr').nth(1).waitFor();
      const text = await detail.innerText();
      assert(text.includes('400') && text.includes('permanent_failure') && text.includes('success'), text);
    });

    await check('it works at phone width without sideways scrolling', async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      await page.goto(`${API}/ui/#/people/${ANA}`);
      await page.locator('#live-state[data-state="live"]').waitFor();
      await page.locator('#inbox-list > li').first().waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 0, `the page is ${overflow}px wider than the screen`);
      await shot(page, 'person-phone.png');
      await page.goto(`${API}/ui/#/ops`);
      await page.locator('#ops-queues dl').waitFor();
      const opsOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(opsOverflow <= 0, `operations is ${opsOverflow}px wider than the screen`);
      await shot(page, 'operations-phone.png');
    });

    await check('no script error, and nothing fetched from anywhere but the api', async () => {
      assert(consoleErrors.length === 0, consoleErrors.join('\n'));
      assert(foreign.length === 0, foreign.join('\n'));
    });
  } catch (e) {
    console.log(`     (${e.message})`);
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

await main();
clearTimeout(watchdog);
report();
process.exit(results.failed === 0 ? 0 : 1);
