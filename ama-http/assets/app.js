// ama search page. Plain DOM, no framework, no inline code (the server's
// Content-Security-Policy forbids it). Every piece of mail data is put on
// the page with textContent or as an attribute value, never as HTML.
'use strict';

const PER_PAGE = 25;
let session = null; // {tenant, user, roles, csrf_token}

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function status(text, isError) {
  const s = $('status');
  s.textContent = text || '';
  s.className = isError ? 'error' : '';
}

function show(view) {
  for (const v of ['login-view', 'search-view', 'message-view']) $(v).hidden = v !== view;
  $('logout').hidden = !session;
  $('who').textContent = session ? `${session.user} @ ${session.tenant} (${session.roles.join(', ')})` : '';
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session && session.csrf_token) headers['X-CSRF-Token'] = session.csrf_token;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && (data.detail || data.title)) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function tenantPath() {
  return `/v1/tenants/${encodeURIComponent(session.tenant)}`;
}

function fmtDate(iso) {
  if (!iso) return '';
  return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC').replace(/:\d\d(\.\d+)?([+-]\d\d:\d\d)$/, ' $2');
}

function fmtMailbox(m) {
  if (!m) return '';
  return m.name ? `${m.name} <${m.address}>` : m.address;
}

function fmtList(list) {
  return (list || []).map(fmtMailbox).join(', ');
}

// ----- routing: #/search?q=…&page=…&sort=… and #/m/<id> ------------------

function parseHash() {
  const h = location.hash.replace(/^#/, '');
  if (h.startsWith('/m/')) return { view: 'message', id: decodeURIComponent(h.slice(3)) };
  const qs = new URLSearchParams(h.startsWith('/search?') ? h.slice(8) : '');
  return {
    view: 'search',
    q: qs.get('q') || '',
    page: Math.max(1, parseInt(qs.get('page') || '1', 10) || 1),
    sort: qs.get('sort') || 'newest',
  };
}

function searchHash(q, page, sort) {
  const qs = new URLSearchParams({ q, page: String(page), sort });
  return `#/search?${qs.toString()}`;
}

let lastSearchHash = '#/search?q=&page=1&sort=newest';
let currentMessage = null;

async function route() {
  if (!session) { show('login-view'); $('login-tenant').focus(); return; }
  const r = parseHash();
  if (r.view === 'message') { await openMessage(r.id); return; }
  lastSearchHash = location.hash || lastSearchHash;
  show('search-view');
  $('q').value = r.q;
  $('sort').value = r.sort;
  await runSearch(r.q, r.page, r.sort);
}

// ----- search -------------------------------------------------------------

async function runSearch(q, page, sort) {
  status('Searching…');
  let res;
  try {
    const qs = new URLSearchParams({ q, page: String(page), per_page: String(PER_PAGE), sort });
    res = await api('GET', `${tenantPath()}/search?${qs.toString()}`);
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; please log in again.');
    $('results').hidden = true; $('pager').hidden = true; $('summary').textContent = '';
    $('export-links').hidden = true;
    status(e.message, true);
    return;
  }
  status('');
  const body = $('results-body');
  body.replaceChildren();
  for (const hit of res.hits) {
    const tr = document.createElement('tr');
    tr.append(el('td', fmtDate(hit.date), 'date'));
    tr.append(el('td', fmtList(hit.from)));
    const subj = document.createElement('td');
    const a = el('a', hit.subject || '(no subject)');
    a.href = `#/m/${encodeURIComponent(hit.id)}`;
    subj.append(a);
    tr.append(subj);
    const att = el('td', hit.attachments > 0 ? '📎' : '');
    if (hit.attachments > 0) att.title = `${hit.attachments} attachment(s)`;
    tr.append(att);
    body.append(tr);
  }
  const exp = new URLSearchParams({ q });
  $('export-mbox').href = `${tenantPath()}/export?${exp.toString()}&format=mbox`;
  $('export-zip').href = `${tenantPath()}/export?${exp.toString()}&format=zip`;
  $('export-links').hidden = res.total === 0;
  const pages = Math.max(1, Math.ceil(res.total / PER_PAGE));
  $('summary').textContent = res.total === 1 ? '1 message' : `${res.total} messages`;
  $('results').hidden = res.hits.length === 0;
  $('pager').hidden = pages <= 1;
  $('page-info').textContent = `Page ${page} of ${pages}`;
  $('prev').disabled = page <= 1;
  $('next').disabled = page >= pages;
  $('prev').onclick = () => { location.hash = searchHash(q, page - 1, sort); };
  $('next').onclick = () => { location.hash = searchHash(q, page + 1, sort); };
}

// ----- one message --------------------------------------------------------

async function openMessage(id) {
  status('Loading…');
  let m;
  try {
    m = await api('GET', `${tenantPath()}/messages/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; please log in again.');
    status(e.message, true);
    return;
  }
  status('');
  show('message-view');
  $('back').href = lastSearchHash;
  $('m-subject').textContent = m.subject || '(no subject)';
  const hb = $('m-headers-body');
  hb.replaceChildren();
  const rows = [
    ['Date', fmtDate(m.date)], ['From', fmtList(m.from)], ['To', fmtList(m.to)],
    ['Cc', fmtList(m.cc)], ['Subject', m.subject || ''], ['Message-ID', m.message_id || ''],
    ['Archive id', m.id],
  ];
  for (const h of m.headers || []) {
    if (!['date', 'from', 'to', 'cc', 'subject', 'message-id'].includes(h.name.toLowerCase())) rows.push([h.name, h.value]);
  }
  for (const [k, v] of rows) {
    if (!v) continue;
    const tr = document.createElement('tr');
    const th = el('th', k); th.scope = 'row';
    tr.append(th, el('td', v));
    hb.append(tr);
  }
  const base = `${tenantPath()}/messages/${encodeURIComponent(m.id)}`;
  $('m-raw').href = `${base}/raw`;
  $('m-raw').setAttribute('download', `${m.id}.eml`);
  $('m-sha').textContent = `SHA-256 ${m.sha256}`;
  const ul = $('m-attachments');
  ul.replaceChildren();
  for (const att of m.attachments || []) {
    const li = document.createElement('li');
    const a = el('a', att.name || `attachment ${att.index + 1}`);
    a.href = `${base}/attachments/${att.index}`;
    a.setAttribute('download', '');
    li.append(a, el('span', ` (${att.mime_type}, ${att.size} bytes)`));
    ul.append(li);
  }
  $('m-attachments-box').hidden = !(m.attachments && m.attachments.length);
  $('m-text').textContent = m.text || '';
  currentMessage = m.id;
  $('m-actions').hidden = !session.roles.includes('auditor');
  $('m-action-result').textContent = '';
  $('m-subject').tabIndex = -1;
  $('m-subject').focus();
}

// ----- auditor actions ------------------------------------------------------

async function placeHold(ev) {
  ev.preventDefault();
  const out = $('m-action-result');
  try {
    const h = await api('POST', `${tenantPath()}/holds`, {
      name: $('hold-name').value.trim(), reason: $('hold-reason').value.trim(), ids: [currentMessage],
    });
    out.textContent = `Legal hold "${h.name}" placed.`;
  } catch (e) {
    out.textContent = `Hold not placed: ${e.message}`;
  }
}

async function requestDeletion(ev) {
  ev.preventDefault();
  const out = $('m-action-result');
  try {
    const r = await api('POST', `${tenantPath()}/deletions`, {
      ids: [currentMessage], reason: $('delete-reason').value.trim(),
    });
    if (r.status === 'pending') {
      out.textContent = `Deletion requested (${r.request}); a second auditor must approve it.`;
    } else if (r.deleted.length) {
      out.textContent = 'Deleted.';
    } else {
      out.textContent = `Kept: ${r.kept.map((k) => k.reason).join('; ')}`;
    }
  } catch (e) {
    out.textContent = `Not deleted: ${e.message}`;
  }
}

// ----- session ------------------------------------------------------------

function loggedOut(msg) {
  session = null;
  show('login-view');
  status(msg || '', !!msg);
  $('login-tenant').focus();
}

async function login(ev) {
  ev.preventDefault();
  status('Logging in…');
  try {
    session = await api('POST', '/v1/login', {
      tenant: $('login-tenant').value.trim(),
      user: $('login-user').value.trim(),
      password: $('login-password').value,
      session: 'cookie',
    });
  } catch (e) {
    session = null;
    status(e.message, true);
    return;
  }
  $('login-password').value = '';
  status('');
  if (!location.hash.startsWith('#/')) location.hash = lastSearchHash;
  await route();
  $('q').focus();
}

async function logout() {
  try { await api('POST', '/v1/logout'); } catch (_) { /* the session is gone either way */ }
  loggedOut('Logged out.');
  history.replaceState(null, '', location.pathname);
}

async function start() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('hold-form').addEventListener('submit', placeHold);
  $('delete-form').addEventListener('submit', requestDeletion);
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = searchHash($('q').value, 1, $('sort').value);
  });
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (ev) => {
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName);
    if (ev.key === '/' && !typing && session) { ev.preventDefault(); location.hash = location.hash.startsWith('#/m/') ? lastSearchHash : location.hash; $('q').focus(); }
    if (ev.key === 'Escape' && location.hash.startsWith('#/m/')) location.hash = lastSearchHash;
  });
  try { session = await api('GET', '/v1/session'); } catch (_) { session = null; }
  await route();
}

document.addEventListener('DOMContentLoaded', start);
