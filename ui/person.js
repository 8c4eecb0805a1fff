// A person's page: their inbox (unread badge, mark read, mark all read) kept live by
// the stream, and their audit trail (events; notifications with status, suppression
// reason and, on demand, each delivery attempt).

import { api, enc, follow, ApiError } from './api.js';
import { announce, h, replace, scroll, status, table, time } from './dom.js';

const PAGE = 50;
/** The audit trail also shows what the stream does not carry (private notifications,
 *  events that notified nobody), so it is refreshed now and then as well. */
const AUDIT_REFRESH_MS = 15000;

export function renderPerson(main, userId, show) {
  let alive = true;
  const base = `/api/v1/users/${enc(userId)}`;

  const badge = h('span', { class: 'badge', id: 'unread-badge', 'aria-live': 'polite' }, '…');
  const live = h('span', { class: 'live-state', id: 'live-state', dataset: { state: 'connecting' } }, 'connecting…');
  const list = h('ol', { class: 'inbox', id: 'inbox-list', 'aria-labelledby': 'inbox-h' });
  const more = h('button', { type: 'button', class: 'quiet', hidden: true }, 'Show older');
  const inboxNote = h('p', { class: 'muted', id: 'inbox-note' });
  const unreadOnly = h('input', { type: 'checkbox', id: 'unread-only' });
  const readAll = h('button', { type: 'button', id: 'read-all' }, 'Mark all read');
  const notes = h('div', { id: 'audit-notifications' }, h('p', { class: 'muted' }, 'Loading…'));
  const events = h('div', { id: 'audit-events' }, h('p', { class: 'muted' }, 'Loading…'));
  const expanded = new Set(); // notification ids whose attempts are shown
  const fresh = new Set(); // ids the stream just reported: highlighted once

  show(`Person ${userId}`,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Person ', h('code', {}, userId)),
      h('p', { class: 'live' }, h('span', { class: 'visually-hidden' }, 'Live updates: '), live)),
    h('section', { class: 'card', 'aria-labelledby': 'inbox-h' },
      h('div', { class: 'section-head' },
        h('h2', { id: 'inbox-h' }, 'Inbox ', badge),
        h('div', { class: 'toolbar' },
          h('label', { class: 'check' }, unreadOnly, ' Unread only'),
          readAll)),
      inboxNote, list, more),
    h('section', { class: 'card', 'aria-labelledby': 'audit-h' },
      h('h2', { id: 'audit-h' }, 'Audit trail'),
      h('h3', {}, 'Notifications'), notes,
      h('h3', {}, 'Events'), events));

  // ------------------------------------------------------------------ inbox
  let inboxGen = 0;
  let cursor = null;

  async function loadInbox({ append = false } = {}) {
    const gen = ++inboxGen; // a slower, older answer must not overwrite a newer one
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (unreadOnly.checked) params.set('unread', 'true');
    if (append && cursor) params.set('cursor', cursor);
    let page;
    try {
      page = await api('GET', `${base}/notifications?${params}`);
    } catch (e) {
      if (!alive || gen !== inboxGen) return;
      if (e instanceof ApiError && e.status === 404) {
        stopStream();
        replace(main, h('h1', {}, 'Person ', h('code', {}, userId)),
          h('p', { class: 'card' }, `No person "${userId}" exists. `,
            h('a', { href: '#/' }, 'Open another person')));
        return;
      }
      inboxNote.textContent = `Cannot load the inbox: ${e.message}`;
      return;
    }
    if (!alive || gen !== inboxGen) return;
    inboxNote.textContent = '';
    setBadge(page.unread_count);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    const items = page.items.map(inboxItem);
    if (append) list.append(...items);
    else replace(list, items);
    if (!append && page.items.length === 0) {
      inboxNote.textContent = unreadOnly.checked ? 'Nothing unread.' : 'No notifications yet.';
    }
    fresh.clear();
  }

  function setBadge(n) {
    badge.textContent = String(n);
    badge.dataset.count = String(n);
    badge.setAttribute('aria-label', `${n} unread`);
    badge.classList.toggle('zero', n === 0);
    readAll.disabled = n === 0;
  }

  function inboxItem(item) {
    const unread = !item.read_at;
    const title = item.subject || item.notification_type;
    const classes = ['item', unread ? 'unread' : 'read', fresh.has(item.id) ? 'fresh' : ''];
    return h('li', { class: classes.join(' '), dataset: { id: item.id } },
      h('div', { class: 'item-body' },
        h('p', { class: 'item-title' },
          unread && h('span', { class: 'dot', 'aria-hidden': 'true' }),
          unread && h('span', { class: 'visually-hidden' }, 'Unread: '),
          title),
        item.text && h('p', { class: 'item-text' }, item.text),
        h('p', { class: 'meta' },
          item.notification_type, ' · ', item.channel, ' · ', status(item.status), ' · ',
          time(item.created_at),
          !unread && [' · read ', time(item.read_at)])),
      unread
        ? h('button', {
          type: 'button', class: 'small mark-read', 'aria-label': `Mark “${title}” read`,
          onclick: (e) => markRead(item.id, e.currentTarget),
        }, 'Mark read')
        : h('span', { class: 'read-mark' }, '✓ Read'));
  }

  async function markRead(id, button) {
    button.disabled = true;
    try {
      await api('POST', `${base}/notifications/${enc(id)}/read`, {});
      announce('Marked read.');
      await loadInbox();
    } catch (e) {
      button.disabled = false;
      inboxNote.textContent = `Cannot mark it read: ${e.message}`;
    }
  }

  readAll.addEventListener('click', async () => {
    readAll.disabled = true;
    try {
      const r = await api('POST', `${base}/notifications/read-all`, {});
      announce(`Marked ${r.marked} read.`);
      await loadInbox();
    } catch (e) {
      inboxNote.textContent = `Cannot mark all read: ${e.message}`;
      readAll.disabled = false;
    }
  });
  unreadOnly.addEventListener('change', () => loadInbox());
  more.addEventListener('click', () => loadInbox({ append: true }));

  // ------------------------------------------------------------ audit trail
  let auditGen = 0;

  async function loadAudit() {
    const gen = ++auditGen;
    let audit;
    try {
      audit = await api('GET', `/audit/${enc(userId)}?limit=50`);
    } catch (e) {
      if (alive && gen === auditGen) replace(notes, h('p', { class: 'error' }, `Cannot load the audit trail: ${e.message}`));
      return;
    }
    if (!alive || gen !== auditGen) return;
    replace(notes, notificationTable(audit.notification_history));
    replace(events, eventTable(audit.recent_events));
    for (const id of expanded) showAttempts(id);
  }

  function notificationTable(rows) {
    if (rows.length === 0) return h('p', { class: 'muted' }, 'No notifications.');
    return scroll(table('Notifications, newest first',
      ['Created', 'Type (triggering event)', 'Channel', 'Status', 'Reason', 'Attempts', ''],
      rows.map((n) => {
        const open = expanded.has(n.notification_id);
        return h('tr', { dataset: { id: n.notification_id } },
          h('td', {}, time(n.created_at)),
          h('td', {}, n.notification_type, h('br'),
            h('span', { class: 'meta' }, `from ${n.trigger_event}`)),
          h('td', {}, n.channel),
          h('td', {}, status(n.status)),
          h('td', { class: 'reason' }, n.suppression_reason ?? ''),
          h('td', { class: 'num' }, String(n.attempts)),
          h('td', {}, h('button', {
            type: 'button', class: 'small quiet', 'aria-expanded': String(open),
            'aria-controls': `attempts-${n.notification_id}`,
            onclick: () => toggleAttempts(n.notification_id),
          }, 'Details')));
      }), { hiddenCaption: true }), 'Notifications');
  }

  function eventTable(rows) {
    if (rows.length === 0) return h('p', { class: 'muted' }, 'No events.');
    return scroll(table('Events, newest first', ['Time', 'Type', 'Properties'],
      rows.map((e) => h('tr', {},
        h('td', {}, time(e.event_timestamp)),
        h('td', {}, e.event_type),
        h('td', {}, h('code', { class: 'props' }, compact(e.properties))))),
      { hiddenCaption: true }), 'Events');
  }

  function toggleAttempts(id) {
    if (expanded.has(id)) {
      expanded.delete(id);
      notes.querySelector(`tr[data-attempts="${CSS.escape(id)}"]`)?.remove();
      setExpanded(id, false);
    } else {
      expanded.add(id);
      showAttempts(id);
    }
  }

  function setExpanded(id, open) {
    notes.querySelector(`tr[data-id="${CSS.escape(id)}"] button[aria-expanded]`)
      ?.setAttribute('aria-expanded', String(open));
  }

  async function showAttempts(id) {
    const row = notes.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    if (!row) return;
    setExpanded(id, true);
    let detail = notes.querySelector(`tr[data-attempts="${CSS.escape(id)}"]`);
    if (!detail) {
      detail = h('tr', { class: 'detail', dataset: { attempts: id } });
      row.after(detail);
    }
    const cell = h('td', { colspan: 7, id: `attempts-${id}` }, h('p', { class: 'muted' }, 'Loading…'));
    replace(detail, cell);
    try {
      const n = await api('GET', `/api/v1/notifications/${enc(id)}`);
      replace(cell,
        h('dl', { class: 'facts' },
          h('dt', {}, 'Notification'), h('dd', {}, h('code', {}, n.id)),
          h('dt', {}, 'Severity'), h('dd', {}, n.severity),
          h('dt', {}, 'Sent'), h('dd', {}, time(n.sent_at)),
          n.delivered_at && [h('dt', {}, 'Delivered'), h('dd', {}, time(n.delivered_at))],
          n.opened_at && [h('dt', {}, 'Opened'), h('dd', {}, time(n.opened_at))],
          n.last_error && [h('dt', {}, 'Last error'), h('dd', { class: 'reason' }, n.last_error)]),
        n.delivery_attempts.length === 0
          ? h('p', { class: 'muted' }, 'No delivery attempts (nothing sent: inbox, suppressed, or not due yet).')
          : table(`Delivery attempts of ${n.notification_type}`,
            ['#', 'Started', 'Duration', 'Reply', 'Outcome', 'Error'],
            n.delivery_attempts.map((a) => h('tr', {},
              h('td', { class: 'num' }, String(a.attempt)),
              h('td', {}, time(a.started_at)),
              h('td', { class: 'num' }, `${a.duration_ms} ms`),
              h('td', { class: 'num' }, a.http_status ?? '—'),
              h('td', {}, status(a.outcome)),
              h('td', { class: 'reason' }, a.error ?? '')))));
    } catch (e) {
      replace(cell, h('p', { class: 'error' }, `Cannot load the attempts: ${e.message}`));
    }
  }

  // ------------------------------------------------------------------- live
  let soon = null;
  function refreshSoon() {
    // A burst of changes (read-all, a fan-out) becomes one reload.
    clearTimeout(soon);
    soon = setTimeout(() => {
      loadInbox();
      loadAudit();
    }, 100);
  }

  const LABELS = { live: 'live', connecting: 'connecting…', offline: 'offline, retrying' };
  const stopStream = follow(userId, {
    onChange: (change) => {
      fresh.add(change.id);
      refreshSoon();
    },
    onReset: refreshSoon,
    onState: (s) => {
      live.dataset.state = s;
      live.textContent = LABELS[s] ?? s;
    },
  });
  const auditTimer = setInterval(() => {
    if (!document.hidden) loadAudit();
  }, AUDIT_REFRESH_MS);

  loadInbox();
  loadAudit();
  return () => {
    alive = false;
    stopStream();
    clearTimeout(soon);
    clearInterval(auditTimer);
  };
}

function compact(value) {
  const text = JSON.stringify(value ?? {});
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}
