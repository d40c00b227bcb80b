// The search page in a real browser (headless Chromium driven by
// Playwright): log in with the keyboard, search a known subject, open the
// message, download the raw message and compare its SHA-256, check that
// hostile mail stays text, log out. Then the auditor panel under four-eyes
// (the tenant's policy, set by browser.rs): auditor USER places a hold and
// requests two deletions, and is refused approving his own; auditor USER2
// approves both (one message deleted, the held one kept back), sees the
// hold and releases it with a reason; END_USER sees no panel.
// Screenshots go to $SCREENSHOTS.
//
// Started by ama-http/tests/browser.rs with BASE_URL, TENANT, USER, USER2,
// END_USER, PASSWORD, SUBJECT, DELETE_SUBJECT, RAW_SHA256, XSS_SUBJECT,
// SCREENSHOTS and CHROMIUM set; prints "BROWSER OK" on success and exits
// non-zero on any failure.
'use strict';

const { chromium } = require('playwright-core');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

// Logs in through the form (fields filled, Enter pressed) and waits for the search view.
async function login(page, user) {
  await page.waitForSelector('#login-view:not([hidden])');
  await page.fill('#login-tenant', env('TENANT'));
  await page.fill('#login-user', user);
  await page.fill('#login-password', env('PASSWORD'));
  await page.focus('#login-password');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#search-view:not([hidden])');
  const who = await page.textContent('#who');
  if (!who.startsWith(`${user} @`)) throw new Error(`not logged in as ${user}: ${who}`);
}

async function logout(page) {
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');
}

// Searches and waits until the summary reads `expect`.
async function search(page, q, expect) {
  await page.fill('#q', q);
  await page.focus('#q');
  await page.keyboard.press('Enter');
  await page.waitForFunction((e) => document.querySelector('#summary').textContent === e, expect);
}

async function main() {
  const base = env('BASE_URL');
  const shots = env('SCREENSHOTS');
  fs.mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  let page;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
    page = await context.newPage();
    // Generous: on a 2-core CI machine the browser shares the CPU with the
    // rest of the test suite (a step took over 15 s there once).
    page.setDefaultTimeout(60000);
    page.on('dialog', async (d) => { problems.push(`a dialog opened: ${d.message()}`); await d.dismiss(); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) {
        problems.push(`CSP violation: ${m.text()}`);
      }
    });

    // Log in, with the keyboard only.
    await page.goto(base + '/');
    await page.waitForSelector('#login-view:not([hidden])');
    await page.screenshot({ path: path.join(shots, '01-login.png') });
    await page.keyboard.type(env('TENANT')); // the tenant field has focus
    await page.keyboard.press('Tab');
    await page.keyboard.type(env('USER'));
    await page.keyboard.press('Tab');
    await page.keyboard.type(env('PASSWORD'));
    await page.keyboard.press('Enter');
    await page.waitForSelector('#search-view:not([hidden])');
    const who = await page.textContent('#who');
    if (!who.includes(env('USER'))) throw new Error(`not logged in: ${who}`);

    // Search for the known subject.
    await page.fill('#q', `subject:"${env('SUBJECT')}"`);
    await page.keyboard.press('Enter');
    // After login the page lists everything; wait for this query's answer.
    await page.waitForFunction(() => document.querySelector('#summary').textContent === '1 message');
    const link = page.locator('#results-body a', { hasText: env('SUBJECT') });
    await link.first().waitFor();
    const summary = await page.textContent('#summary');
    await page.screenshot({ path: path.join(shots, '02-results.png'), fullPage: true });

    // Open it (keyboard: focus the link, Enter).
    await link.first().focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#message-view:not([hidden])');
    const subject = await page.textContent('#m-subject');
    if (subject !== env('SUBJECT')) throw new Error(`opened ${subject}`);
    await page.screenshot({ path: path.join(shots, '03-message.png'), fullPage: true });

    // Download the raw message; it is byte-identical (same SHA-256).
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#m-raw')]);
    const file = path.join(shots, 'raw-download.eml');
    await download.saveAs(file);
    const sha = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    if (sha !== env('RAW_SHA256')) throw new Error(`raw download differs: ${sha}`);

    // Auditor actions: a legal hold, then a deletion request that the hold keeps back.
    await page.fill('#hold-name', 'case-7');
    await page.fill('#hold-reason', 'litigation');
    await page.click('#hold-form button');
    await page.waitForFunction(() => document.querySelector('#m-action-result').textContent.includes('placed'));
    // Four-eyes is on: the request waits for a second auditor.
    await page.fill('#delete-reason', 'quarterly: past retention');
    await page.click('#delete-form button');
    await page.waitForFunction(() => document.querySelector('#m-action-result').textContent.startsWith('Deletion requested'));
    await page.screenshot({ path: path.join(shots, '03b-deletion-requested.png'), fullPage: true });

    // Hostile mail: the payloads are shown as text, nothing runs.
    await page.keyboard.press('Escape');
    await page.waitForSelector('#search-view:not([hidden])');
    await page.fill('#q', 'mallory');
    await page.keyboard.press('Enter');
    const xlink = page.locator('#results-body a', { hasText: env('XSS_SUBJECT') });
    await xlink.first().waitFor();
    await xlink.first().click();
    await page.waitForSelector('#message-view:not([hidden])');
    const xs = await page.textContent('#m-subject');
    if (xs !== env('XSS_SUBJECT')) throw new Error(`XSS subject shown as ${xs}`);
    const injected = await page.evaluate(() => ({
      scripts: document.querySelectorAll('main script').length,
      imgs: document.querySelectorAll('main img, main svg, main iframe').length,
      flag: window.__ama_xss === true,
    }));
    if (injected.scripts || injected.imgs || injected.flag) {
      throw new Error(`markup from the mail reached the DOM: ${JSON.stringify(injected)}`);
    }
    await page.screenshot({ path: path.join(shots, '04-hostile-mail.png'), fullPage: true });

    // A second deletion request, for a message nothing holds.
    await page.keyboard.press('Escape');
    await page.waitForSelector('#search-view:not([hidden])');
    await search(page, `subject:"${env('DELETE_SUBJECT')}"`, '1 message');
    await page.locator('#results-body a', { hasText: env('DELETE_SUBJECT') }).first().click();
    await page.waitForSelector('#message-view:not([hidden])');
    await page.fill('#delete-reason', 'private: erasure request');
    await page.click('#delete-form button');
    await page.waitForFunction(() => document.querySelector('#m-action-result').textContent.startsWith('Deletion requested'));

    // The panel: both requests wait; the requester may not approve his own.
    await page.click('#auditor-link');
    await page.waitForSelector('#auditor-view:not([hidden])');
    await page.waitForFunction(() => document.querySelectorAll('#requests-body tr').length === 2);
    const own = page.locator('#requests-body tr', { hasText: 'private: erasure request' });
    await own.locator('button', { hasText: 'Approve' }).click();
    await page.waitForFunction(() => document.querySelector('#a-result').textContent.includes('not approved'));
    const refusal = await page.textContent('#a-result');
    if (!refusal.includes('four-eyes')) throw new Error(`self-approval: ${refusal}`);
    if (await page.locator('#requests-body tr').count() !== 2) throw new Error('a request vanished after a refused approval');
    await page.screenshot({ path: path.join(shots, '06-four-eyes-refused.png'), fullPage: true });

    // Log out: the session is gone on the server too.
    await page.click('#logout');
    await page.waitForSelector('#login-view:not([hidden])');
    const after = await page.evaluate(async () => (await fetch('/v1/session')).status);
    if (after !== 401) throw new Error(`session still valid after logout: ${after}`);
    if ((await page.textContent('#requests-body')) !== '') throw new Error('the panel kept its rows after logout');
    await page.screenshot({ path: path.join(shots, '05-logged-out.png') });

    // The second auditor: with the keyboard to the panel, approve both.
    await login(page, env('USER2'));
    await page.focus('#auditor-link');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#auditor-view:not([hidden])');
    await page.waitForFunction(() => document.querySelectorAll('#requests-body tr').length === 2);
    const row = page.locator('#requests-body tr', { hasText: 'private: erasure request' });
    const cells = await row.locator('td').allTextContents();
    if (cells[1] !== env('USER') || cells[3] !== '1') throw new Error(`request row: ${JSON.stringify(cells)}`);
    const holdRow = page.locator('#holds-body tr', { hasText: 'case-7' });
    const hcells = await holdRow.locator('td').allTextContents();
    if (hcells[1] !== '1 message' || hcells[2] !== 'litigation' || hcells[3] !== env('USER') || hcells[5] !== 'active') {
      throw new Error(`hold row: ${JSON.stringify(hcells)}`);
    }
    await page.screenshot({ path: path.join(shots, '07-auditor-panel.png'), fullPage: true });
    await row.locator('button', { hasText: 'Approve' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#a-result').textContent.includes('approved:'));
    const approved = await page.textContent('#a-result');
    if (!approved.includes('1 message deleted')) throw new Error(`approval: ${approved}`);
    await page.waitForFunction(() => document.querySelectorAll('#requests-body tr').length === 1);
    await page.locator('#requests-body tr', { hasText: 'quarterly: past retention' }).locator('button').click();
    await page.waitForFunction(() => document.querySelector('#a-result').textContent.includes('kept back'));
    const keptBack = await page.textContent('#a-result');
    if (!keptBack.includes('0 messages deleted') || !keptBack.includes('case-7')) throw new Error(`held approval: ${keptBack}`);
    await page.waitForSelector('#requests-empty:not([hidden])');
    await page.screenshot({ path: path.join(shots, '08-approved.png'), fullPage: true });

    // Release the hold: the button asks for a reason (keyboard only).
    if (await page.isVisible('#release-form')) throw new Error('the release form shows before Release is pressed');
    await holdRow.locator('button', { hasText: 'Release' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#release-form:not([hidden])');
    const focused = await page.evaluate(() => document.activeElement.id);
    if (focused !== 'release-reason') throw new Error(`focus after Release: ${focused}`);
    await page.keyboard.type('matter settled');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#a-result').textContent.includes('released'));
    // The lists are fetched again after the message: wait for the redraw.
    await page.waitForFunction(() => document.querySelector('#holds-body tr td:nth-child(6)').textContent.startsWith('released'));
    const state = (await holdRow.locator('td').allTextContents())[5];
    if (!state.startsWith(`released by ${env('USER2')}`) || !state.includes('matter settled')) throw new Error(`released hold: ${state}`);
    if (await holdRow.locator('button').count() !== 0) throw new Error('a released hold still offers Release');
    if (await page.isVisible('#release-form')) throw new Error('the release form stays after the release');
    await page.screenshot({ path: path.join(shots, '09-hold-released.png'), fullPage: true });

    // The deleted message is gone from search; the held one stayed.
    await page.click('#search-link');
    await page.waitForSelector('#search-view:not([hidden])');
    await search(page, `subject:"${env('DELETE_SUBJECT')}"`, '0 messages');
    await search(page, `subject:"${env('SUBJECT')}"`, '1 message');
    await logout(page);

    // An end user sees no panel, not even by its address.
    await login(page, env('END_USER'));
    if (await page.isVisible('#auditor-link')) throw new Error('an end user sees the auditor link');
    await page.evaluate(() => { location.hash = '#/auditor'; });
    await page.waitForFunction(() => location.hash.startsWith('#/search'));
    await page.waitForSelector('#search-view:not([hidden])');
    if (await page.isVisible('#auditor-view')) throw new Error('an end user sees the auditor panel');
    await page.screenshot({ path: path.join(shots, '10-end-user.png'), fullPage: true });
    await logout(page);

    if (problems.length) throw new Error(problems.join('; '));
    console.log(`BROWSER OK (${summary.trim()}; screenshots in ${shots})`);
  } catch (e) {
    if (page) await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
    const at = page ? await page.evaluate(() => location.hash).catch(() => '?') : '';
    console.error(`BROWSER FAILED at ${at}: ${e.stack}${problems.length ? ` [${problems.join('; ')}]` : ''}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main();
