/**
 * `npm run test:scenarios`: the shipped example scenarios, the rescan-event timings and the
 * fault-matrix machinery, end to end through the simulation (too slow for npm test's 3 minutes).
 */
const base = require('./jest.config.js');
const paths = require('./jest.scenarios.config.paths.js');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  testPathIgnorePatterns: ['/node_modules/'],
  testMatch: undefined,
  testRegex: paths.map((p) => p.replace('<rootDir>/', '')),
};
