/**
 * The real relay binary for tests: `webb-relay` with synthetic flows in a scratch store, its
 * HTTP API on a free loopback port; and a stand-in for Grafana's data source proxy (which needs
 * Grafana's server) that applies plugin.json's routes exactly as Grafana documents them, so the
 * datasource's requests reach the relay over real HTTP with the token added server-side.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Observable } from 'rxjs';

import type { BackendSrv, BackendSrvRequest, FetchResponse } from '@grafana/runtime';

import pluginJson from '../plugin.json';

/** Start-up and each request are bounded by this; polls by STEPS × STEP_MS. */
const WAIT_MS = 30_000;
const STEPS = 300;
const STEP_MS = 100;

export interface Relay {
  /** `http://127.0.0.1:<port>`, the relay's HTTP port. */
  url: string;
  /** Stops the process and removes its store. */
  stop(): Promise<void>;
}

/** The relay binary CI built (`cargo xtask test` sets WEBB_RELAY_BIN); fails with what to do. */
export function relayBinary(): string {
  const bin = process.env.WEBB_RELAY_BIN;
  if (!bin) {
    throw new Error(
      'WEBB_RELAY_BIN is not set: these tests run the real relay. Run them with `cargo xtask test --only grafana-plugin`, ' +
        'or build it (`cargo build -p relay`) and set WEBB_RELAY_BIN=$CARGO_TARGET_DIR/debug/webb-relay'
    );
  }
  if (!fs.existsSync(bin)) {
    throw new Error(`WEBB_RELAY_BIN=${bin} does not exist: build the relay first (cargo build -p relay)`);
  }
  return bin;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startRelay(opts: { flows: number; token?: string }): Promise<Relay> {
  const bin = relayBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webb-plugin-relay-'));
  const [grpc, httpPort] = [await freePort(), await freePort()];
  const args = [
    '--synthetic-flows',
    String(opts.flows),
    '--store-dir',
    path.join(dir, 'store'),
    '--listen',
    `127.0.0.1:${grpc}`,
    '--http-listen',
    `127.0.0.1:${httpPort}`,
    '--node-name',
    'plugin-test-relay',
  ];
  if (opts.token) {
    args.push('--api-token', opts.token);
  }
  let log = '';
  const child: ChildProcess = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  let exited: number | null = null;
  const done = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exited = code ?? -1;
      resolve();
    })
  );
  const stop = async () => {
    if (exited === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(t);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${httpPort}`;
  const started = Date.now();
  for (let i = 0; i < STEPS && Date.now() - started < WAIT_MS; i++) {
    if (exited !== null) {
      break;
    }
    if ((await get(`${url}/healthz`)) === 200) {
      return { url, stop };
    }
    await sleep(STEP_MS);
  }
  await stop();
  throw new Error(`webb-relay did not serve ${url}/healthz (exit: ${exited}); its output:\n${log}`);
}

interface Route {
  path: string;
  url: string;
  headers?: Array<{ name: string; content: string }>;
}

/** Grafana's `{{ .JsonData.x }}` / `{{ .SecureJsonData.x }}` route templates. */
export function renderRouteTemplate(
  text: string,
  jsonData: Record<string, unknown>,
  secure: Record<string, string>
): string {
  return text.replace(/\{\{\s*\.(JsonData|SecureJsonData)\.(\w+)\s*\}\}/g, (_, scope: string, key: string) => {
    const v = scope === 'JsonData' ? jsonData[key] : secure[key];
    return v === undefined || v === null ? '' : String(v);
  });
}

/**
 * A BackendSrv whose `fetch` does what Grafana's data source proxy does for this plugin:
 * `<instance url>/<route path>/<rest>` → `<route url>/<rest>` with the route's headers, the
 * templates filled from jsonData and secureJsonData. A non-2xx answer is an error carrying
 * `status` and the decoded `data`, as Grafana's BackendSrv gives.
 */
export function proxyBackendSrv(
  instanceUrl: string,
  jsonData: Record<string, unknown>,
  secure: Record<string, string>
): BackendSrv {
  const routes = (pluginJson as { routes?: Route[] }).routes ?? [];
  const fetch = <T>(req: BackendSrvRequest): Observable<FetchResponse<T>> =>
    new Observable<FetchResponse<T>>((sub) => {
      const prefix = `${instanceUrl}/`;
      if (!req.url.startsWith(prefix)) {
        sub.error(new Error(`the plugin asked for ${req.url}, outside its data source proxy ${prefix}`));
        return;
      }
      const rest = req.url.slice(prefix.length);
      const route = routes.find(
        (r) => rest === r.path || rest.startsWith(`${r.path}/`) || rest.startsWith(`${r.path}?`)
      );
      if (!route) {
        sub.error({ status: 404, statusText: 'Not Found', data: { message: `no plugin.json route matches ${rest}` } });
        return;
      }
      const target = new URL(
        renderRouteTemplate(route.url, jsonData, secure).replace(/\/$/, '') + rest.slice(route.path.length)
      );
      const headers: Record<string, string> = { ...(req.headers ?? {}) };
      for (const h of route.headers ?? []) {
        headers[h.name] = renderRouteTemplate(h.content, jsonData, secure);
      }
      const body = req.data === undefined ? undefined : JSON.stringify(req.data);
      const r = http.request(target, { method: req.method ?? 'GET', headers, timeout: WAIT_MS }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          let data: unknown = text;
          try {
            data = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            sub.next({
              data: data as T,
              status,
              statusText: res.statusMessage ?? '',
              ok: true,
              headers: {} as Headers,
              redirected: false,
              type: 'basic',
              url: req.url,
              config: req,
            });
            sub.complete();
          } else {
            sub.error({ status, statusText: res.statusMessage ?? '', data, config: req });
          }
        });
      });
      r.on('timeout', () => r.destroy(new Error(`no answer from ${target} in ${WAIT_MS} ms`)));
      r.on('error', (e) =>
        sub.error({ status: 502, statusText: 'Bad Gateway', data: { message: e.message }, config: req })
      );
      if (body !== undefined) {
        r.write(body);
      }
      r.end();
    });
  return { fetch } as unknown as BackendSrv;
}
