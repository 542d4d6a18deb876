/** The suites `npm run test:scenarios` runs, and `npm test` leaves to it (regular expressions on the path). */
module.exports = [
  '<rootDir>/test/simulation/scenarios\\.test\\.ts$',
  '<rootDir>/test/simulation/rescan-events\\.test\\.ts$',
  '<rootDir>/test/simulation/faults\\.test\\.ts$',
  '<rootDir>/test/simulation/multi-account-scenarios\\.test\\.ts$',
];
