// The search page in a real browser (headless Chromium driven by
// Playwright): log in with the keyboard, search a known subject, open the
// message, download the raw message and compare its SHA-256, check that
// hostile mail stays text, log out. Screenshots go to $SCREENSHOTS.
//
// Started by ama-http/tests/browser.rs with BASE_URL, TENANT, USER,
// PASSWORD, SUBJECT, RAW_SHA256, XSS_SUBJECT, SCREENSHOTS and CHROMIUM set;
// prints "BROWSER OK" on success and exits non-zero on any failure.
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
    await page.fill('#delete-reason', 'past retention');
    await page.click('#delete-form button');
    await page.waitForFunction(() => document.querySelector('#m-action-result').textContent.startsWith('Kept'));
    const kept = await page.textContent('#m-action-result');
    if (!kept.includes('case-7')) throw new Error(`deletion result: ${kept}`);
    await page.screenshot({ path: path.join(shots, '03b-hold-keeps-message.png'), fullPage: true });

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

    // Log out: the session is gone on the server too.
    await page.click('#logout');
    await page.waitForSelector('#login-view:not([hidden])');
    const after = await page.evaluate(async () => (await fetch('/v1/session')).status);
    if (after !== 401) throw new Error(`session still valid after logout: ${after}`);
    await page.screenshot({ path: path.join(shots, '05-logged-out.png') });

    if (problems.length) throw new Error(problems.join('; '));
    console.log(`BROWSER OK (${summary.trim()}; screenshots in ${shots})`);
  } catch (e) {
    if (page) await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(`BROWSER FAILED: ${e.message}${problems.length ? ` [${problems.join('; ')}]` : ''}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main();
