/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The shipped example scenarios, the rescan-event timings and the fault-matrix machinery run end to
  // end through the simulation (about 130 s of work on two cores): `npm run test:scenarios`
  // (jest.scenarios.config.js), which .ci/run also runs. The safety scenarios, the promises, stay here.
  testPathIgnorePatterns: ['/node_modules/', ...require('./jest.scenarios.config.paths.js')],
  transform: { '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  setupFiles: ['<rootDir>/test/support/setup-env.ts'],
  testTimeout: 60000,
  // Two cores on CI: one worker per core keeps CDK synth tests from starving each other.
  maxWorkers: process.env.CI ? 2 : '50%',
  // Longest suites first even without jest's cached timings (a fresh clone): jest.sequencer.js.
  testSequencer: '<rootDir>/jest.sequencer.js',
};
