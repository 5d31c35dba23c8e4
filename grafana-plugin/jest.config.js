// force timezone to UTC so that tests read the same everywhere
process.env.TZ = 'UTC';

const base = require('./.config/jest.config');

module.exports = {
  ...base,
  // d3-color >= 3.1.1 ships ESM as .mjs, which the scaffold's swc transform does not match.
  transform: { ...base.transform, '^.+\\.mjs$': base.transform['^.+\\.(t|j)sx?$'] },
  // The browser check lives in browser/ and runs under Playwright, not jest.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/browser/'],
};
