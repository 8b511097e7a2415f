# syntax=docker/dockerfile:1
# Wyvern images: one Dockerfile, one target per daemon.
#
#   docker build --target auth  -t wyvern/auth  .     (lobby, game, world, actor, chat alike)
#   docker build --target keygen -t wyvern/keygen .   (one-shot Ed25519 key generator, compose only)
#
# The build stage compiles all six daemons once (BuildKit shares it between
# the six targets); each target is the slim runtime base plus one binary and,
# where the daemon has a schema, its migrations. Runtime images hold no
# compiler, no source, no test code and no secret: configuration and keys
# come from the environment and mounted volumes at run time.

ARG DEBIAN_VERSION=12

# ---------------------------------------------------------------- build stage
FROM debian:${DEBIAN_VERSION} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
      librdkafka-dev libhiredis-dev libpq-dev libssl-dev libjansson-dev \
      libuv1-dev libwslay-dev libhttp-parser-dev libargon2-dev \
      libunistring-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto/ proto/
COPY libs/ libs/
COPY services/ services/
RUN make -j"$(nproc)" BUILD=build daemons \
 && strip --strip-unneeded build/wy-*

# ---------------------------------------------------------------- runtime base
# Runtime libraries only (the Debian 12 packages behind the -dev packages
# above; tests/deploy checks that they cover every library the daemons link),
# plus ca-certificates for outbound TLS and curl for the HEALTHCHECK.
FROM debian:${DEBIAN_VERSION}-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 librdkafka1 libhiredis0.14 libpq5 libssl3 \
      libjansson4 libuv1 libwslay1 libhttp-parser2.9 libargon2-1 \
      libunistring2 libcurl4 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wyvern \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin wyvern
# Listeners must be reachable from outside the container.
ENV WY_BIND_HOST=0.0.0.0
# Numeric user so that Kubernetes runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /

# ---------------------------------------------------------------- one target per daemon
FROM runtime AS auth
COPY --from=build /src/build/wy-auth /usr/bin/wy-auth
COPY --from=build /src/services/auth/migrations/ /usr/share/wyvern/auth/migrations/
ENV WY_AUTH_MIGRATIONS_DIR=/usr/share/wyvern/auth/migrations
EXPOSE 8080 9101 9201
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_AUTH_OPS_PORT:-9101}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-auth"]

FROM runtime AS lobby
COPY --from=build /src/build/wy-lobby /usr/bin/wy-lobby
COPY --from=build /src/services/lobby/migrations/ /usr/share/wyvern/lobby/migrations/
ENV WY_LOBBY_MIGRATIONS_DIR=/usr/share/wyvern/lobby/migrations
EXPOSE 8081 9102 9202
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_LOBBY_OPS_PORT:-9102}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-lobby"]

FROM runtime AS game
COPY --from=build /src/build/wy-game /usr/bin/wy-game
EXPOSE 8082 9103 9203
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_GAME_OPS_PORT:-9103}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-game"]

FROM runtime AS world
COPY --from=build /src/build/wy-world /usr/bin/wy-world
# The sample world (data/zones); mount another folder over it for your own.
COPY data/zones/ /usr/share/wyvern/world/zones/
ENV WY_WORLD_ZONES_DIR=/usr/share/wyvern/world/zones
EXPOSE 9104 9204
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_WORLD_OPS_PORT:-9104}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-world"]

FROM runtime AS actor
COPY --from=build /src/build/wy-actor /usr/bin/wy-actor
COPY --from=build /src/services/actor/migrations/ /usr/share/wyvern/actor/migrations/
ENV WY_ACTOR_MIGRATIONS_DIR=/usr/share/wyvern/actor/migrations
EXPOSE 9105 9205
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_ACTOR_OPS_PORT:-9105}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-actor"]

FROM runtime AS chat
COPY --from=build /src/build/wy-chat /usr/bin/wy-chat
COPY --from=build /src/services/chat/migrations/ /usr/share/wyvern/chat/migrations/
ENV WY_CHAT_MIGRATIONS_DIR=/usr/share/wyvern/chat/migrations
EXPOSE 9106 9206
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${WY_CHAT_OPS_PORT:-9106}/readyz" || exit 1
ENTRYPOINT ["/usr/bin/wy-chat"]

# ---------------------------------------------------------------- keygen (compose one-shot)
# Writes an Ed25519 signing key <kid>.pem into /keys unless one is there
# already: keys are made where they are used, never built into an image.
# Runs as the daemons' user: a new `keys` volume takes the owner of the
# image's /keys (uid 10001), so no root is needed to write the key.
FROM debian:${DEBIAN_VERSION}-slim AS keygen
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wyvern \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin wyvern \
 && mkdir -m 0700 /keys && chown 10001:10001 /keys
COPY deploy/compose/keygen.sh /usr/bin/wy-keygen
USER 10001:10001
ENTRYPOINT ["/usr/bin/wy-keygen"]

# A plain `docker build .` without --target gets the first daemon image.
FROM auth
