# syntax=docker/dockerfile:1
# One image for Warden's three programs: warden (the control plane with
# `warden control-plane`, and the admin commands), warden-gateway and
# warden-agent. Which one runs is the container's command, e.g.
#   docker build -t warden .
#   docker run --rm warden warden-gateway --help
ARG NODE_IMAGE=node:20-slim

# Build: every dependency, then TypeScript to dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY control-plane/package.json control-plane/
COPY gateway/package.json gateway/
COPY agent/package.json agent/
# npm install rather than npm ci: the lock names an optional, Windows-only
# package that the registry does not serve, which only npm install skips.
# --ignore-scripts: `prepare` builds, and the sources are not copied yet.
RUN npm install --no-audit --no-fund --ignore-scripts
COPY tsconfig.base.json tsconfig.json ./
COPY proto proto
COPY control-plane control-plane
COPY gateway gateway
COPY agent agent
RUN npx tsc -b

# Runtime: production dependencies only, the built code, a user without privileges.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /opt/warden
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY control-plane/package.json control-plane/
COPY gateway/package.json gateway/
COPY agent/package.json agent/
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /src/proto/dist proto/dist
COPY --from=build /src/control-plane/dist control-plane/dist
COPY --from=build /src/control-plane/bin control-plane/bin
COPY --from=build /src/control-plane/policy.schema.json control-plane/
COPY --from=build /src/gateway/dist gateway/dist
COPY --from=build /src/gateway/bin gateway/bin
COPY --from=build /src/agent/dist agent/dist
COPY --from=build /src/agent/bin agent/bin
COPY deploy/docker/healthcheck.mjs deploy/docker/
RUN ln -s /opt/warden/control-plane/bin/warden.js /usr/local/bin/warden \
 && ln -s /opt/warden/gateway/bin/warden-gateway.js /usr/local/bin/warden-gateway \
 && ln -s /opt/warden/agent/bin/warden-agent.js /usr/local/bin/warden-agent \
 && groupadd --system --gid 10001 warden \
 && useradd --system --uid 10001 --gid warden --home-dir /var/lib/warden --create-home --shell /usr/sbin/nologin warden \
 && mkdir -p /var/lib/warden/control-plane /var/lib/warden/gateway /var/lib/warden/agent \
 && chown -R warden:warden /var/lib/warden
# State under /var/lib/warden (a volume takes the owner of its directory here).
# A numeric user, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/warden
# Postgres (gateway), tunnel (gateway), control plane, metrics of control plane, gateway, agent.
EXPOSE 15432 7443 7070 9470 9471 9472
# GET /healthz on the metrics port of the program this container runs
# (--metrics-listen, WARDEN_METRICS_LISTEN, the options file, or its default).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["node", "/opt/warden/deploy/docker/healthcheck.mjs"]
CMD ["warden", "--help"]
