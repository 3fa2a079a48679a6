// The console's pages: one bundle in dist/, served by the control plane
// (control-plane/src/console/static.ts). JSX goes to Preact through tsconfig.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 200 },
});
