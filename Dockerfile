# pgring container image.
#
#   docker build -t pgring .
#   docker run -p 6432:6432 -p 9930:9930 -v $PWD/proxy.json:/etc/pgring/proxy.json:ro pgring
#
# Mount your own proxy.json at /etc/pgring/proxy.json (inside a container set
# listen.host and metrics.host to "0.0.0.0"). Extra arguments replace CMD, e.g.
# `docker run pgring --config /cfg/proxy.json --log-level debug`.
# Signals: SIGTERM drains (running transactions finish within shutdownGraceMs, exit 0),
# SIGHUP reloads the config file. Health: GET http://<metrics host:port>/healthz.

# ---- build: compiles TypeScript and the zookeeper native addon ----------------------
FROM node:20-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY package.json package-lock.json ./
# postinstall patches and rebuilds the zookeeper binding (scripts/patch-zookeeper.js)
COPY scripts/patch-zookeeper.js ./scripts/
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev

# ---- runtime: the built dist and production node_modules only -----------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /build/package.json /build/package-lock.json ./
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /build/dist/src ./dist/src
# The node image's unprivileged user (uid 1000).
USER node
EXPOSE 6432 9930
ENTRYPOINT ["node", "dist/src/cli/main.js", "proxy"]
CMD ["--config", "/etc/pgring/proxy.json"]
