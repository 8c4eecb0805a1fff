// The console's shell: asks for the API key once (kept in this browser), then routes
// between the people, person and operations pages by the URL's #fragment, so every
// page has an address to bookmark and the Back button works.

import { api, forgetKey, getKey, setKey, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { renderPerson } from './person.js';
import { renderOps } from './ops.js';

const main = document.getElementById('main');
const forget = document.getElementById('forget-key');
const RECENT = 'herald.recentPeople';
let cleanup = () => {};

function recentPeople() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT) ?? '[]');
    return Array.isArray(list) ? list.filter((x) => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export function rememberPerson(userId) {
  const list = [userId, ...recentPeople().filter((x) => x !== userId)].slice(0, 8);
  localStorage.setItem(RECENT, JSON.stringify(list));
}

/** Puts a page in <main>, titles the document and moves focus to the heading. */
function show(title, ...content) {
  document.title = `${title} · Herald console`;
  replace(main, ...content);
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function keyForm(message) {
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', required: true,
    spellcheck: 'false', 'aria-describedby': 'key-help',
  });
  const error = h('p', { class: 'error', role: 'alert' }, message ?? '');
  const submit = async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    error.textContent = 'Checking…';
    try {
      await api('GET', '/api/v1/ops/summary', undefined, key);
      setKey(key);
      error.textContent = '';
      route();
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401
        ? 'The API refused this key.'
        : `Cannot check the key: ${err.message}`;
      input.focus();
    }
  };
  show('API key',
    h('h1', {}, 'Herald console'),
    h('form', { class: 'card narrow', onsubmit: submit },
      h('label', { for: 'api-key' }, 'API key'),
      h('p', { id: 'key-help', class: 'hint' },
        'One of the keys in HERALD_API_KEYS (dev-key after make up). It is kept in this browser only.'),
      h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Open console')),
      error));
  input.focus();
}

function peoplePage() {
  const input = h('input', {
    id: 'user-id', name: 'user-id', required: true, autocomplete: 'off', spellcheck: 'false',
    maxlength: 128,
  });
  const open = (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/people/${encodeURIComponent(id)}`;
  };
  const recent = recentPeople();
  show('People',
    h('h1', {}, 'People'),
    h('form', { class: 'card narrow', onsubmit: open },
      h('label', { for: 'user-id' }, 'Person (user id)'),
      h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Open'))),
    recent.length > 0 && h('section', { 'aria-labelledby': 'recent-h' },
      h('h2', { id: 'recent-h' }, 'Recently opened'),
      h('ul', { class: 'links' }, recent.map((id) =>
        h('li', {}, h('a', { href: `#/people/${encodeURIComponent(id)}` }, id))))));
  input.focus();
}

function markNav(which) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === which) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function route() {
  cleanup();
  cleanup = () => {};
  const hasKey = getKey() !== '';
  forget.hidden = !hasKey;
  if (!hasKey) {
    markNav(null);
    keyForm();
    return;
  }
  const hash = location.hash.replace(/^#/, '') || '/';
  const person = hash.match(/^\/people\/(.+)$/);
  if (person) {
    markNav('people');
    let userId;
    try {
      userId = decodeURIComponent(person[1]);
    } catch {
      userId = person[1];
    }
    rememberPerson(userId);
    cleanup = renderPerson(main, userId, show);
  } else if (hash === '/ops') {
    markNav('ops');
    cleanup = renderOps(main, show);
  } else {
    markNav('people');
    peoplePage();
  }
}

forget.addEventListener('click', () => {
  forgetKey();
  route();
});

window.addEventListener('herald:unauthorized', () => {
  forgetKey();
  cleanup();
  cleanup = () => {};
  forget.hidden = true;
  keyForm('The API refused the saved key: enter it again.');
});

window.addEventListener('hashchange', route);
route();
