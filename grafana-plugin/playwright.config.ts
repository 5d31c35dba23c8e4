import { defineConfig } from '@playwright/test';

/**
 * The browser check: the editors in browser/index.html, driven in Debian's chromium
 * (`apt-get install chromium`; never a browser downloaded by Playwright).
 */
export default defineConfig({
  testDir: './browser',
  outputDir: './test-results/browser',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 30_000,
  reporter: [['list'], ['json', { outputFile: './test-results/browser-report.json' }]],
  use: {
    headless: true,
    viewport: { width: 1100, height: 1000 },
    launchOptions: {
      executablePath: process.env.WEBB_CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    },
  },
});
