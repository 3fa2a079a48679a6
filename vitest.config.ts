import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{control-plane,gateway,agent,proto,test}/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    globalSetup: ['test/support/services.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
