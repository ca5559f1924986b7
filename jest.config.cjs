// Two projects: unit tests (pure, next to the code) and integration tests (test/integration) that
// share one local environment (real kube-apiserver, etcd, Prometheus, model servers).
// kubernetes-fluent-client and its dependencies are ESM-only: let ts-jest compile them to CommonJS.
const esmPackages = [
  "kubernetes-fluent-client",
  "@kubernetes/client-node",
  "openid-client",
  "oauth4webapi",
  "jose",
  "pepr",
  "undici",
];
const shared = {
  // etcd snapshots (member/snap/*.snap) in the environment's state would look like obsolete jest snapshots.
  modulePathIgnorePatterns: ["<rootDir>/.local/"],
  preset: "ts-jest/presets/js-with-ts",
  testEnvironment: "node",
  transform: {
    "^.+\\.[tj]sx?$": [
      "ts-jest",
      {
        tsconfig: {
          allowJs: true,
          module: "commonjs",
          esModuleInterop: true,
          isolatedModules: true,
        },
        diagnostics: false,
      },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esmPackages.join("|")})/)`],
  moduleFileExtensions: ["ts", "js", "json", "mjs", "cjs"],
};
module.exports = {
  testTimeout: 120000,
  projects: [
    {
      ...shared,
      displayName: "unit",
      testMatch: ["<rootDir>/{capabilities,picker,hack,bench,plugin}/**/*.test.ts"],
    },
    {
      ...shared,
      displayName: "integration",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      globalSetup: "<rootDir>/test/global-setup.ts",
      globalTeardown: "<rootDir>/test/global-teardown.ts",
    },
  ],
};
