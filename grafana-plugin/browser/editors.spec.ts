import { expect, Page, test } from '@playwright/test';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';

/** The harness page and its bundle, served on a loopback port picked by the OS. */
let server: http.Server;
let base: string;
const errors: string[] = [];

const ROOT = __dirname;
const ICONS_URL = 'public/build/img/icons/';
const ICONS_DIR = path.resolve(ROOT, '..', 'node_modules', '@grafana', 'ui', 'dist', 'public', 'img', 'icons');
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.svg': 'image/svg+xml' };

test.beforeAll(async () => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'harness.js'))) {
    throw new Error('browser/dist/harness.js is missing: run `npm run build:harness` (npm run test:browser does)');
  }
  server = http.createServer((req, res) => {
    const rel = (req.url ?? '/').split('?')[0].replace(/^\/+/, '') || 'index.html';
    // Grafana serves @grafana/ui's icons under public/build/img/icons; the package ships them.
    const [dir, name] = rel.startsWith(ICONS_URL) ? [ICONS_DIR, rel.slice(ICONS_URL.length)] : [ROOT, rel];
    const file = path.resolve(dir, name);
    if (!file.startsWith(dir + path.sep) || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

test.afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()));
});

async function open(page: Page) {
  page.on('pageerror', (e) => errors.push(String(e)));
  // Failed loads are checked by URL here, so the console's URL-less copy of them is skipped.
  // Grafana's fonts come from Grafana's server and no npm package; the page falls back to
  // system fonts without them.
  page.on('response', (r) => {
    if (r.status() >= 400 && !new URL(r.url()).pathname.startsWith('/public/fonts/')) {
      errors.push(`${r.status()} ${r.url()}`);
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      errors.push(m.text());
    }
  });
  await page.goto(`${base}/index.html`);
  await expect(page.locator('#query-editor')).toBeVisible();
}

async function state(page: Page, id: string) {
  return JSON.parse((await page.locator(id).textContent()) ?? '{}');
}

test('query editor: filters, validation message and query types in a real browser', async ({ page }) => {
  await open(page);
  const editor = page.locator('#query-editor');
  await editor.getByLabel('Namespace').fill('shop');
  await editor.getByLabel('Namespace').blur();
  let s = await state(page, '#query-state');
  const runs = s.runs;
  expect(runs).toBeGreaterThan(0);

  // An invalid field shows its message and the query does not run.
  await editor.getByLabel('HTTP status').fill('200, 6xx');
  await editor.getByLabel('HTTP status').blur();
  await expect(
    editor.getByText('HTTP status "6xx" is not a code or class (expected e.g. 404, 4+ or 40+)').first()
  ).toBeVisible();
  s = await state(page, '#query-state');
  expect(s.query).toMatchObject({ queryType: 'flows', namespace: 'shop', httpStatus: '200, 6xx' });
  expect(s.runs).toBe(runs);
  await page.screenshot({ path: path.join('test-results', 'browser', 'query-editor-invalid.png'), fullPage: true });

  await editor.getByLabel('HTTP status').fill('5+');
  await editor.getByLabel('HTTP status').blur();
  await expect(editor.getByText(/is not a code or class/)).toHaveCount(0);
  s = await state(page, '#query-state');
  expect(s.runs).toBe(runs + 1);

  await editor.getByLabel('Verdict').click();
  await page.getByText('DROPPED', { exact: true }).click();
  s = await state(page, '#query-state');
  expect(s.query.verdict).toEqual(['DROPPED']);

  await page.screenshot({ path: path.join('test-results', 'browser', 'query-editor-flows.png'), fullPage: true });

  await editor.getByRole('radio', { name: 'Service map' }).check();
  s = await state(page, '#query-state');
  expect(s.query.queryType).toBe('serviceMap');
  await expect(editor.getByLabel('Pod')).toHaveCount(0);

  await editor.getByRole('radio', { name: 'SQL' }).check();
  await editor.getByRole('textbox', { name: 'SQL' }).fill('SELECT verdict, count(*) FROM flows GROUP BY verdict');
  s = await state(page, '#query-state');
  expect(s.query).toMatchObject({ queryType: 'sql', sql: 'SELECT verdict, count(*) FROM flows GROUP BY verdict' });
  expect(errors).toEqual([]);
});

test('config editor: relay URL, token and Tempo picker in a real browser', async ({ page }) => {
  await open(page);
  const editor = page.locator('#config-editor');
  await expect(editor.getByText(/^Relay URL is required/)).toBeVisible();
  await editor.getByLabel('Relay URL').fill('webb-relay:9965');
  await expect(editor.getByText('Relay URL "webb-relay:9965" must start with http:// or https://')).toBeVisible();
  await editor.getByLabel('Relay URL').fill('http://webb-relay:9965');
  await expect(editor.getByText(/Relay URL .* must/)).toHaveCount(0);
  await editor.getByLabel('API token').fill('s3cret');

  await editor.getByLabel('Select a data source').click();
  const menu = page.getByLabel('Select options menu');
  await expect(menu.getByText('Tempo staging')).toBeVisible();
  await expect(menu.getByText('Prometheus')).toHaveCount(0);
  await menu.getByText('Tempo', { exact: true }).click();

  const s = await state(page, '#config-state');
  expect(s.jsonData).toEqual({
    relayUrl: 'http://webb-relay:9965',
    tempoDatasourceUid: 'tempo-main',
    tempoDatasourceName: 'Tempo',
  });
  expect(s.secureJsonData).toEqual({ apiToken: 's3cret' });
  await page.screenshot({ path: path.join('test-results', 'browser', 'editors.png'), fullPage: true });
  expect(errors).toEqual([]);
});
