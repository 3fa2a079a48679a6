// Policy files shared by the policy tests.

export const POLICY_A = `version: 1
issuers:
  - name: github
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
identities:
  - name: ci-deploy
    issuer: github
    match: { repository: acme/shop, ref: refs/heads/main }
    groups: [deployers]
  - name: ci-reader
    issuer: github
    match: { sub: "repo:acme/shop:*" }
  - name: demo
    issuer: local-dev
    match: { sub: demo }
resources:
  - name: shop
    agent: local
  - name: shop-prod
    agent: dc1
    description: shop primary
rules:
  - name: ci-read-only
    resource: shop-prod
    identities: [ci-reader]
    groups: [readers]
    access: read
    schemas: { allow: [public] }
    tables: { deny: [public.secrets] }
  - name: deploys
    resource: shop-prod
    groups: [deployers]
    access: ddl
  - name: demo-read-only
    resource: shop
    identities: [demo]
`;

/** A: ci-read-only may write, ci-deploy goes, a resource is added. */
export const POLICY_B = POLICY_A.replace('    access: read\n', '    access: write\n')
  .replace(/  - name: ci-deploy\n(    .*\n){3}/, '')
  .replace('resources:\n', 'resources:\n  - name: reports\n    agent: dc2\n');

/** A file for approval rules to build on: a deploying identity with DDL on shop. */
export const APPROVAL_BASE = `version: 1
issuers:
  - name: github
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
identities:
  - name: ci-deploy
    issuer: github
    match: { sub: "repo:acme/shop:*" }
resources:
  - name: shop
    agent: local
rules:
  - name: deploy
    resource: shop
    identities: [ci-deploy]
    access: ddl
`;
