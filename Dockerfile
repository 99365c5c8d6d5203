# syntax=docker/dockerfile:1
#
# One image for every etz role:
#   sidecar (default):  etz sidecar --config /etc/etz/sidecar.yaml     (uid 1337, NET_ADMIN not needed)
#   init mode:          etz iptables [options]                          (needs only NET_ADMIN, as root)
#   zone manager:       etz manager --config /etc/etz/manager.yaml --data-dir /var/lib/etz
#
# Build: docker build -t etz:dev .
ARG NODE_VERSION=20

# -- deps: production dependencies + the SO_ORIGINAL_DST addon, compiled from source -----------
FROM node:${NODE_VERSION}-bookworm AS deps
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
COPY scripts/build-native.js ./scripts/build-native.js
# In the image a missing addon is a build error, not a silent fallback to Host-header routing.
ENV ETZ_NATIVE_REQUIRED=1
RUN npm ci --omit=dev --no-audit --no-fund \
 && test -f build/Release/etz_original_dst.node

# -- build: the TypeScript compile, with dev dependencies -------------------------------------
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# `etz demo` runs the sample application beside the sidecars.
COPY examples ./examples
RUN npx tsc -p tsconfig.json \
 && test -f dist/src/cli/main.js

# -- runtime: slim Node 20, production dependencies only ---------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# iptables for the init mode (etz iptables); nothing else is added to the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 1337 etz \
 && useradd --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin etz \
 && mkdir -p /etc/etz /var/lib/etz \
 && chown 1337:1337 /var/lib/etz
WORKDIR /opt/etz
ENV NODE_ENV=production
COPY --from=deps /src/package.json ./package.json
COPY --from=deps /src/node_modules ./node_modules
COPY --from=deps /src/build/Release/etz_original_dst.node ./build/Release/etz_original_dst.node
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/examples ./dist/examples
RUN chmod 0755 dist/src/cli/main.js \
 && ln -s /opt/etz/dist/src/cli/main.js /usr/local/bin/etz \
 && etz version
USER 1337:1337
# admin, outbound, inbound (sidecar); 15012 (zone manager)
EXPOSE 15000 15001 15006 15012
# The sidecar's admin /healthz on loopback. Other roles set ETZ_HEALTHCHECK_URL (or their own
# healthcheck in compose/Kubernetes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.ETZ_HEALTHCHECK_URL||'http://127.0.0.1:15000/healthz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["etz"]
CMD ["sidecar", "--config", "/etc/etz/sidecar.yaml"]
