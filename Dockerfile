# syntax=docker/dockerfile:1
# Multi-stage: build with dev dependencies, run compiled JS with production dependencies only, as non-root.
# glibc (Debian bookworm) is required: the uWebSockets.js native binary does not load on musl/Alpine.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY bench ./bench
COPY fixtures ./fixtures
RUN npm run build && node dist/src/cli/main.js demo

FROM node:20-bookworm-slim AS runtime
# GLIBC_TUNABLES: huge pages for the segment store and the shared tables (src/common/node-flags.ts).
ENV NODE_ENV=production PORT=8080 ADMIN_PORT=8081 GLIBC_TUNABLES=glibc.malloc.hugetlb=1
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/fixtures ./fixtures
COPY bin ./bin
RUN mkdir -p /app/var && chown -R node:node /app/fixtures /app/var
USER node
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.ADMIN_PORT||8081)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--min-semi-space-size=16", "--max-semi-space-size=16", "dist/src/cli/main.js", "serve"]
