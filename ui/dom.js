// Small DOM helpers. Everything shown comes from the API, so text is always set as
// text (never as HTML): a notification's subject cannot inject markup.

/** h('p', {class: 'x', onclick: fn}, 'text', child, [more children]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes (no children helper needed beyond append). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  append(el, children);
  return el;
}

/** Replaces everything inside `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// Short and unambiguous in any locale: "Nov 21, 21:49:38" (the exact instant, in
// UTC, is the element's title).
const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  hourCycle: 'h23',
});

/** A <time> element: local date and time, the exact instant in its title. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: d.toISOString() }, timeFormat.format(d));
}

/** A status chip: colour and text (never colour alone). */
export function status(s) {
  return h('span', { class: `chip chip-${s}` }, s);
}

/** Wraps a table so that it scrolls sideways on a narrow screen instead of the page. */
export function scroll(table, label) {
  return h('div', { class: 'scroll', role: 'region', 'aria-label': label, tabindex: 0 }, table);
}

/** A table with a caption, header cells and rows of cells. */
export function table(caption, headers, rows, { hiddenCaption = false } = {}) {
  return h('table', {},
    h('caption', { class: hiddenCaption ? 'visually-hidden' : undefined }, caption),
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows));
}

/** A message in the page's live region, for screen readers and everyone else. */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (region) region.textContent = text;
}
