/** `npm run test:scenarios`: the shipped example scenarios, run end to end through the simulation. */
const base = require('./jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  testPathIgnorePatterns: ['/node_modules/'],
  testMatch: ['**/test/simulation/scenarios.test.ts'],
};
