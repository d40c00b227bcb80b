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

function isAuditor() {
  return !!session && (session.roles || []).includes('auditor');
}

function show(view) {
  for (const v of ['login-view', 'search-view', 'message-view', 'auditor-view']) $(v).hidden = v !== view;
  $('logout').hidden = !session;
  $('top-nav').hidden = !session;
  // Only a convenience: the server refuses the auditor calls to anyone else.
  $('auditor-link').hidden = !isAuditor();
  $('search-link').href = lastSearchHash;
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

// ----- routing: #/search?q=…&page=…&sort=…, #/m/<id> and #/auditor ---------

function parseHash() {
  const h = location.hash.replace(/^#/, '');
  if (h.startsWith('/m/')) return { view: 'message', id: decodeURIComponent(h.slice(3)) };
  if (h === '/auditor') return { view: 'auditor' };
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
  if (r.view === 'auditor') {
    if (isAuditor()) { await openAuditor(); return; }
    history.replaceState(null, '', lastSearchHash);
    return route();
  }
  lastSearchHash = location.hash || lastSearchHash;
  show('search-view');
  $('q').value = r.q;
  $('sort').value = r.sort;
  await runSearch(r.q, r.page, r.sort);
}

// ----- search -------------------------------------------------------------

let searchSeq = 0; // only the newest search may draw its answer

async function runSearch(q, page, sort) {
  status('Searching…');
  const mine = ++searchSeq;
  let res;
  try {
    const qs = new URLSearchParams({ q, page: String(page), per_page: String(PER_PAGE), sort });
    res = await api('GET', `${tenantPath()}/search?${qs.toString()}`);
    if (mine !== searchSeq) return;
  } catch (e) {
    if (mine !== searchSeq) return;
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

// ----- the auditor panel: legal holds and pending deletion requests -------

let releaseTarget = null; // the name of the hold the release form is for

function auditorResult(text, isError) {
  const out = $('a-result');
  out.textContent = text || '';
  out.className = isError ? 'error' : '';
}

function plural(n, one) {
  return n === 1 ? `1 ${one}` : `${n} ${one}s`;
}

function fmtScope(scope) {
  if (!scope) return '';
  if (scope.query !== undefined) return `query: ${scope.query}`;
  if (scope.custodian !== undefined) return `custodian: ${scope.custodian}`;
  if (scope.ids) return plural(scope.ids.length, 'message');
  return '';
}

function fmtOutcome(r) {
  let text = `${plural(r.deleted.length, 'message')} deleted`;
  if (r.kept.length) text += `; kept back: ${r.kept.map((k) => k.reason).join('; ')}`;
  return text;
}

async function openAuditor() {
  show('auditor-view');
  $('release-form').hidden = true;
  releaseTarget = null;
  await loadAuditor();
  $('auditor-h').focus();
}

// Fetches both lists and redraws them; a failure is shown in the panel.
async function loadAuditor() {
  status('Loading…');
  let requests, holds;
  try {
    [requests, holds] = await Promise.all([
      api('GET', `${tenantPath()}/deletion-requests`),
      api('GET', `${tenantPath()}/holds`),
    ]);
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; please log in again.');
    status(e.message, true);
    return;
  }
  status('');
  renderRequests(requests);
  renderHolds(holds);
}

function renderRequests(requests) {
  const body = $('requests-body');
  body.replaceChildren();
  for (const r of requests) {
    const tr = document.createElement('tr');
    tr.dataset.request = r.id;
    const n = r.ids.length;
    const count = el('td', String(n));
    count.title = r.ids.join(', ');
    tr.append(el('td', r.id, 'mono'), el('td', r.requested_by || '(operator)'), el('td', r.reason), count);
    const act = document.createElement('td');
    const b = el('button', 'Approve');
    b.type = 'button';
    b.setAttribute('aria-label', `Approve deletion request ${r.id} (${plural(n, 'message')})`);
    b.addEventListener('click', () => approveRequest(r.id));
    act.append(b);
    tr.append(act);
    body.append(tr);
  }
  $('requests').hidden = requests.length === 0;
  $('requests-empty').hidden = requests.length !== 0;
}

function renderHolds(holds) {
  const body = $('holds-body');
  body.replaceChildren();
  for (const h of holds) {
    const tr = document.createElement('tr');
    tr.dataset.hold = h.name;
    const scope = el('td', fmtScope(h.scope));
    if (h.scope && h.scope.ids) scope.title = h.scope.ids.join(', ');
    tr.append(el('td', h.name), scope, el('td', h.reason), el('td', h.placed_by || '(operator)'),
      el('td', fmtDate(h.placed_at), 'date'));
    const act = document.createElement('td');
    if (h.released) {
      const by = h.released.by || '(operator)';
      tr.append(el('td', `released by ${by} at ${fmtDate(h.released.at)}: ${h.released.reason}`, 'state-released'));
    } else {
      tr.append(el('td', 'active'));
      const b = el('button', 'Release…');
      b.type = 'button';
      b.setAttribute('aria-label', `Release legal hold ${h.name}`);
      b.addEventListener('click', () => askRelease(h.name));
      act.append(b);
    }
    tr.append(act);
    body.append(tr);
  }
  $('holds').hidden = holds.length === 0;
  $('holds-empty').hidden = holds.length !== 0;
}

async function approveRequest(id) {
  auditorResult(`Approving ${id}…`);
  try {
    const r = await api('POST', `${tenantPath()}/deletion-requests/${encodeURIComponent(id)}/approve`);
    auditorResult(`Request ${id} approved: ${fmtOutcome(r)}.`);
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; please log in again.');
    auditorResult(`Request ${id} not approved: ${e.message}`, true);
    return;
  }
  await loadAuditor();
}

function askRelease(name) {
  releaseTarget = name;
  $('release-what').textContent = `Release legal hold "${name}": why?`;
  $('release-reason').value = '';
  $('release-form').hidden = false;
  $('release-reason').focus();
}

function cancelRelease() {
  const name = releaseTarget;
  releaseTarget = null;
  $('release-form').hidden = true;
  const back = [...document.querySelectorAll('#holds-body tr')].find((tr) => tr.dataset.hold === name);
  const b = back && back.querySelector('button');
  if (b) b.focus();
}

async function releaseHold(ev) {
  ev.preventDefault();
  const name = releaseTarget;
  if (name === null) return;
  const reason = $('release-reason').value.trim();
  if (!reason) { auditorResult('A release needs a reason.', true); $('release-reason').focus(); return; }
  try {
    await api('POST', `${tenantPath()}/holds/${encodeURIComponent(name)}/release`, { reason });
  } catch (e) {
    if (e.status === 401) return loggedOut('Your session has ended; please log in again.');
    auditorResult(`Hold "${name}" not released: ${e.message}`, true);
    return;
  }
  releaseTarget = null;
  $('release-form').hidden = true;
  auditorResult(`Legal hold "${name}" released.`);
  await loadAuditor();
  $('auditor-h').focus();
}

// ----- session ------------------------------------------------------------

function loggedOut(msg) {
  session = null;
  // Nothing the last user saw stays in the page for the next one.
  lastSearchHash = '#/search?q=&page=1&sort=newest';
  currentMessage = null;
  releaseTarget = null;
  for (const id of ['results-body', 'm-headers-body', 'm-attachments', 'requests-body', 'holds-body']) $(id).replaceChildren();
  for (const id of ['summary', 'm-subject', 'm-text', 'm-action-result', 'a-result']) $(id).textContent = '';
  $('release-form').hidden = true;
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
  $('release-form').addEventListener('submit', releaseHold);
  $('release-cancel').addEventListener('click', cancelRelease);
  $('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = searchHash($('q').value, 1, $('sort').value);
  });
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (ev) => {
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName);
    if (ev.key === '/' && !typing && session) { ev.preventDefault(); location.hash = location.hash.startsWith('#/search') ? location.hash : lastSearchHash; $('q').focus(); }
    if (ev.key === 'Escape' && location.hash.startsWith('#/m/')) location.hash = lastSearchHash;
    if (ev.key === 'Escape' && !$('release-form').hidden) cancelRelease();
  });
  try { session = await api('GET', '/v1/session'); } catch (_) { session = null; }
  await route();
}

document.addEventListener('DOMContentLoaded', start);
