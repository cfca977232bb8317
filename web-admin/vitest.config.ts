import { defineConfig } from "vitest/config";

// Unit tests render components to static HTML in Node: no browser, no DOM emulation needed.
export default defineConfig({
  test: { environment: "node", include: ["src/**/*.test.{ts,tsx}"] },
});
