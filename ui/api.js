// Talking to herald-api: the key kept in this browser, JSON calls, the live stream.

const KEY = 'herald.apiKey';

export function getKey() {
  return localStorage.getItem(KEY) ?? '';
}

export function setKey(key) {
  localStorage.setItem(KEY, key);
}

export function forgetKey() {
  localStorage.removeItem(KEY);
}

/** An answer other than 2xx, with the API's own message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Calls the API with the key; returns the parsed JSON (null when empty). */
export async function api(method, path, body, key = getKey()) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the API does not answer (${e.message})`, null);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const message = data?.error?.message ?? `HTTP ${resp.status}`;
    // The saved key stopped working (keys rotated): ask again. A key being tried on
    // the key form is not saved yet, and its refusal is shown there.
    if (resp.status === 401 && key && key === getKey()) {
      window.dispatchEvent(new CustomEvent('herald:unauthorized'));
    }
    throw new ApiError(resp.status, message, data);
  }
  return data;
}

export const enc = encodeURIComponent;

/**
 * Follows a person's live stream. Browsers' EventSource sends no headers, so the key
 * goes as ?access_token=. EventSource reconnects by itself (sending Last-Event-ID);
 * when it gives up (the server refused, or was away too long) a new one is opened
 * with ?last_event_id= so nothing is missed in between.
 *
 * handlers: onChange(change), onReset(), onState('live' | 'connecting' | 'offline')
 * Returns a function that closes the stream.
 */
export function follow(userId, { onChange, onReset, onState }) {
  let lastId = null;
  let source = null;
  let retry = null;
  let closed = false;

  const open = () => {
    const params = new URLSearchParams({ access_token: getKey() });
    if (lastId !== null) params.set('last_event_id', String(lastId));
    source = new EventSource(`/api/v1/users/${enc(userId)}/stream?${params}`);
    onState('connecting');
    source.addEventListener('open', () => onState('live'));
    source.addEventListener('notification', (e) => {
      lastId = Number(e.lastEventId);
      try {
        onChange(JSON.parse(e.data));
      } catch (err) {
        console.error('bad stream event', err, e.data);
      }
    });
    source.addEventListener('reset', (e) => {
      lastId = Number(e.lastEventId);
      onReset();
    });
    source.addEventListener('error', () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        onState('offline');
        retry = setTimeout(open, 5000);
      } else {
        onState('connecting');
      }
    });
  };

  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
}
