import { defineConfig } from 'vitest/config';

// CI asks for a JSON summary (DOCKET_TEST_RESULTS) so .ci/run can print "N passed, N failed".
const resultsFile = process.env.DOCKET_TEST_RESULTS;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    reporters: resultsFile ? ['default', 'json'] : ['default'],
    outputFile: resultsFile ? { json: resultsFile } : undefined,
  },
});
