import { defineConfig } from 'vitest/config';

// Workers are real threads; the machine has 2 cores. Forks keep each test file in its own
// process so a wedged worker can never take another file's shared memory with it.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
