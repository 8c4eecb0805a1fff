// The operations page: queue depths, notifications by status over the last hour (a
// small inline SVG chart), the latest failures with a retry button, the latest dead
// letters (jobs given up on after too many deliveries), and the live workers'
// heartbeats. Refreshed every 5 s while the tab is visible.

import { api, enc } from './api.js';
import { announce, h, replace, scroll, svg, table, time } from './dom.js';

const REFRESH_MS = 5000;
const STATUSES = ['pending', 'bundled', 'sent', 'failed', 'suppressed'];
const FAILURES = 20;

export function renderOps(main, show) {
  let alive = true;
  const updated = h('span', { id: 'ops-updated' }, '…');
  const refresh = h('button', { type: 'button', class: 'quiet', id: 'ops-refresh' }, 'Refresh');
  const queues = h('div', { id: 'ops-queues' });
  const chart = h('div', { id: 'ops-chart' });
  const failures = h('div', { id: 'ops-failures' });
  const deadLetters = h('div', { id: 'ops-dead-letters' });
  const workers = h('div', { id: 'ops-workers' });
  const note = h('p', { class: 'error', role: 'alert' });
  const retried = new Map(); // id -> what the retry answered, shown until the list moves on

  show('Operations',
    h('div', { class: 'page-head' },
      h('h1', {}, 'Operations'),
      h('p', { class: 'live' }, 'Updated ', updated, ' (every 5 s) ', refresh)),
    note,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'queues-h' },
        h('h2', { id: 'queues-h' }, 'Queues'), queues),
      h('section', { class: 'card', 'aria-labelledby': 'chart-h' },
        h('h2', { id: 'chart-h' }, 'Notifications, last hour'), chart)),
    h('section', { class: 'card', 'aria-labelledby': 'failures-h' },
      h('h2', { id: 'failures-h' }, 'Latest failures'), failures),
    h('section', { class: 'card', 'aria-labelledby': 'dead-letters-h' },
      h('h2', { id: 'dead-letters-h' }, 'Dead letters'), deadLetters),
    h('section', { class: 'card', 'aria-labelledby': 'workers-h' },
      h('h2', { id: 'workers-h' }, 'Workers'), workers));

  let gen = 0;
  async function load() {
    const mine = ++gen;
    let summary;
    let failed;
    let dead;
    try {
      [summary, failed, dead] = await Promise.all([
        api('GET', '/api/v1/ops/summary'),
        api('GET', `/api/v1/notifications?status=failed&limit=${FAILURES}`),
        api('GET', `/api/v1/dead-letters?limit=${FAILURES}`),
      ]);
    } catch (e) {
      if (alive && mine === gen) note.textContent = `Cannot load the overview: ${e.message}`;
      return;
    }
    if (!alive || mine !== gen) return;
    note.textContent = '';
    replace(updated, time(new Date().toISOString()));
    renderQueues(summary);
    replace(chart, statusChart(summary.notifications_last_hour));
    renderFailures(failed.items);
    renderDeadLetters(dead.items);
    renderWorkers(summary.workers);
  }

  function renderQueues(summary) {
    const q = summary.queues;
    replace(queues,
      h('dl', { class: 'stats' },
        stat('Critical', q ? q.critical : '—'),
        stat('Default', q ? q.default : '—'),
        stat('Delayed', q ? q.delayed : '—'),
        stat('Redis', summary.redis)),
      h('p', { class: 'hint' },
        'Jobs waiting on each stream; workers serve critical before default. ',
        'Delayed: retries and rule delays waiting for their due time.'));
  }

  function renderFailures(items) {
    if (items.length === 0) {
      replace(failures, h('p', { class: 'muted' }, 'No failed notifications.'));
      return;
    }
    replace(failures, scroll(table('Failed notifications, newest first',
      ['Created', 'Person', 'Type', 'Channel', 'Attempts', 'Last error', ''],
      items.map((n) => h('tr', { dataset: { id: n.id } },
        h('td', {}, time(n.created_at)),
        h('td', {}, n.user_id
          ? h('a', { href: `#/people/${enc(n.user_id)}` }, n.user_id)
          : h('span', { class: 'muted' }, '—')),
        h('td', {}, n.notification_type),
        h('td', {}, n.channel),
        h('td', { class: 'num' }, String(n.attempts)),
        h('td', { class: 'reason' }, n.last_error ?? n.suppression_reason ?? ''),
        h('td', {}, retryCell(n)))),
      { hiddenCaption: true }), 'Failed notifications'));
  }

  function renderDeadLetters(items) {
    if (items.length === 0) {
      replace(deadLetters, h('p', { class: 'muted' }, 'No job was given up on.'));
      return;
    }
    replace(deadLetters, scroll(table('Dead letters, newest first',
      ['When', 'Job', 'Event', 'Notification', 'Deliveries', 'Reason'],
      items.map((d) => h('tr', { dataset: { id: String(d.id) } },
        h('td', {}, time(d.created_at)),
        h('td', {}, d.kind),
        h('td', {}, d.event_id ? h('code', {}, d.event_id) : h('span', { class: 'muted' }, '—')),
        h('td', {}, d.notification_id ? h('code', {}, d.notification_id) : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'num' }, String(d.deliveries)),
        h('td', { class: 'reason' }, d.reason))),
      { hiddenCaption: true }), 'Dead letters'));
  }

  function retryCell(n) {
    const done = retried.get(n.id);
    if (done) return h('span', { class: 'muted', role: 'status' }, done);
    return h('button', {
      type: 'button', class: 'small retry', 'aria-label': `Retry ${n.notification_type} for ${n.user_id ?? 'nobody'}`,
      onclick: (e) => retry(n, e.currentTarget),
    }, 'Retry');
  }

  async function retry(n, button) {
    button.disabled = true;
    try {
      await api('POST', `/api/v1/notifications/${enc(n.id)}/retry`, {});
      retried.set(n.id, 'Queued for retry');
      button.replaceWith(h('span', { class: 'muted', role: 'status' }, 'Queued for retry'));
      announce(`Retry of ${n.notification_type} queued.`);
      setTimeout(load, 1000);
    } catch (e) {
      button.disabled = false;
      note.textContent = `Cannot retry: ${e.message}`;
    }
  }

  function renderWorkers(beats) {
    if (beats === null) {
      replace(workers, h('p', { class: 'muted' }, 'Unknown: Redis is down.'));
      return;
    }
    if (beats.length === 0) {
      replace(workers, h('p', { class: 'error' }, 'No live worker: nothing is being delivered.'));
      return;
    }
    replace(workers, scroll(table('Live workers (from their heartbeats)',
      ['Worker', 'PID', 'Queues', 'Concurrency', 'Started'],
      beats.map((b) => h('tr', {},
        h('td', {}, h('code', {}, b.worker_id ?? String(b))),
        h('td', { class: 'num' }, b.pid ?? '—'),
        h('td', {}, Array.isArray(b.queues) ? b.queues.join(', ') : '—'),
        h('td', { class: 'num' }, b.concurrency ?? '—'),
        h('td', {}, time(b.started_at)))),
      { hiddenCaption: true }), 'Workers'));
  }

  refresh.addEventListener('click', load);
  const timer = setInterval(() => {
    if (!document.hidden) load();
  }, REFRESH_MS);
  load();
  return () => {
    alive = false;
    clearInterval(timer);
  };
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, String(value)));
}

/** Horizontal bars, one per status: readable at phone width, labelled in text. */
function statusChart(byStatus) {
  const counts = STATUSES.map((s) => [s, Number(byStatus?.[s] ?? 0)]);
  const max = Math.max(1, ...counts.map(([, n]) => n));
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  // Sized so that one SVG unit is about one CSS pixel on a phone.
  const rowH = 26;
  const labelW = 92;
  const countW = 44;
  const width = 340;
  const barMax = width - labelW - countW;
  const summary = counts.map(([s, n]) => `${s} ${n}`).join(', ');
  const graphic = svg('svg', {
    viewBox: `0 0 ${width} ${rowH * counts.length}`, class: 'chart', role: 'img',
    'aria-label': `Notifications created in the last hour by status: ${summary}`,
  },
  ...counts.map(([s, n], i) => {
    const y = i * rowH;
    const w = n === 0 ? 0 : Math.max(2, Math.round((n / max) * barMax));
    return svg('g', { class: `bar bar-${s}` },
      svg('text', { x: 0, y: y + rowH / 2 + 5, class: 'label' }, s),
      svg('rect', { x: labelW, y: y + 5, width: w, height: rowH - 10, rx: 3 }),
      svg('text', { x: labelW + w + 6, y: y + rowH / 2 + 5, class: 'count' }, String(n)));
  }));
  return h('figure', { class: 'chart-figure' }, graphic,
    h('figcaption', {}, `${total} created in the last hour`));
}

