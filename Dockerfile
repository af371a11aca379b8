# syntax=docker/dockerfile:1
# One image for both roles: `walship replicate|restore|...` (the sidecar and the restore init
# container) and `walship operator`. Build: docker build -t walship:dev .
#
# Dependencies are installed with `npm install --no-save` against the committed package-lock.json
# rather than `npm ci`: npm 11 (what Node 24 ships) rejects this lock in `npm ci` because it prunes
# other platforms' optional binaries from the lock it writes (see the Makefile). --no-save leaves
# the lock as committed, so the versions are still the locked ones.
# test/infra/images builds this file unchanged with buildah (offline); test/integration/image.test.ts runs
# the CLI inside the built image, and every end-to-end test runs it on a real node.
ARG NODE_IMAGE=node:24-bookworm-slim

# Compile TypeScript to dist/ (needs the dev dependencies: typescript).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-save --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# Production dependencies only. better-sqlite3 ships prebuilt binaries in its package, so no
# compiler and no install script are needed.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-save --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="walship" \
      org.opencontainers.image.description="SQLite WAL replication to object storage, and its Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# glibc's malloc, made to give large blocks back: by default it raises its mmap threshold after the
# first large free (up to 32 MiB), so the replicator's many 128 KiB-4 MiB buffers (WAL reads, LZ4
# frames, upload bodies) then come from the brk heap and thread arenas, which fragment and are rarely
# returned. Fixed at 128 KiB (its initial value), those blocks are mapped and unmapped each time. A
# soak at 100 transactions a second under the 384Mi limit: RSS 185.7 MiB at 21 minutes and still
# rising without it, 137.0 MiB with it (docs/reliability.md, Soak).
ENV MALLOC_MMAP_THRESHOLD_=131072
# Node's compile cache, filled below: every command is a fresh process (a restore init container at
# each pod start), and most of a small restore's time is compiling the modules it loads. With the
# cache a small restore from S3 took about a fifth less (docs/benchmarks.md, Start-up).
ENV NODE_COMPILE_CACHE=/app/compile-cache
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# `walship` on the PATH: the operator's pod specs (sidecar, restore init container, restore Jobs) run
# `walship ...` as their command, and so can users (`kubectl exec ... -- walship snapshots ...`).
# Then the compile cache: filled for the image's user and for root (Node keeps entries per uid),
# with the flags of main.js's first line, and made read-only: a command reads it and writes nothing
# under /app (readOnlyRootFilesystem or not); another uid compiles as it would without a cache.
RUN chmod 0755 /app/dist/main.js && ln -s /app/dist/main.js /usr/local/bin/walship \
    && install -d -o 1000 -g 1000 /app/compile-cache \
    && setpriv --reuid=1000 --regid=1000 --clear-groups node --max-semi-space-size=2 /app/dist/warm-compile-cache.js \
    && node --max-semi-space-size=2 /app/dist/warm-compile-cache.js \
    && chown 0:0 /app/compile-cache && chmod -R a-w /app/compile-cache
# The image's unprivileged "node" user, by number so that runAsNonRoot can verify it. Nothing is
# written under /app: the replicator writes beside its database (a volume) and the operator only to
# the API server, so readOnlyRootFilesystem works. The one exception is validation
# (validation-interval), which restores into $TMPDIR: give it an emptyDir at /tmp.
USER 1000:1000
# No init process: walship installs its own SIGTERM/SIGINT handlers (a PID 1 without handlers would
# ignore them): the replicator syncs once more and exits 0, the operator finishes running reconciles
# and gives its Lease up. Node reaps its own children (the -exec child).
ENTRYPOINT ["walship"]
CMD ["version"]
