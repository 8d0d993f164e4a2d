# syntax=docker/dockerfile:1
#
# ratelimitd's image: two static binaries, ratelimitd and ratelimitctl, on
# distroless (CA certificates and time zones, no shell, no package
# manager), running as user 65532.
#
#   docker build -t ratelimitd:dev .
#   docker run --rm -p 8081:8081 -p 8080:8080 ratelimitd:dev
#
# serves the quickstart config (examples/quickstart/config, copied to
# /etc/ratelimitd/config) with the memory backend. Mount your own rules over
# that directory, or point -config elsewhere; add flags after the image
# name (docker run ratelimitd:dev -backend redis -redis-addr redis:6379).
# examples/kubernetes runs it in a cluster. A test there keeps this file's
# Go version equal to go.mod's and checks the other choices below.

# Build stage. The module files come first so that the download layer is
# rebuilt only when they change. CGO_ENABLED=0: a static binary that runs
# on an image without libc. -trimpath: no local paths in the binary.
# -ldflags "-s -w": no symbol table or DWARF (smaller; panics still print
# stack traces).
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/ratelimitd ./cmd/ratelimitd && \
    go build -trimpath -ldflags "-s -w" -o /out/ratelimitctl ./cmd/ratelimitctl

# Run stage.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ratelimitd /out/ratelimitctl /usr/local/bin/
COPY examples/quickstart/config /etc/ratelimitd/config
# Defaults as environment variables rather than arguments, so that flags
# given to `docker run` add to them instead of replacing them; a flag or a
# RATELIMITD_* variable of your own wins. The flags' own defaults listen on
# loopback, which nothing outside the container reaches. (Coming from
# envoyproxy/ratelimit with its GRPC_PORT, PORT or RUNTIME_ROOT variables:
# set RATELIMITD_GRPC_ADDR, RATELIMITD_HTTP_ADDR and RATELIMITD_CONFIG to
# "" so that they apply; an empty variable counts as unset.)
ENV RATELIMITD_GRPC_ADDR=0.0.0.0:8081 \
    RATELIMITD_HTTP_ADDR=0.0.0.0:8080 \
    RATELIMITD_CONFIG=/etc/ratelimitd/config
# A directory the user can write, for the memory backend's runtime
# overrides file (-overrides-file, relative to it by default).
WORKDIR /home/nonroot
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 8081 8080
ENTRYPOINT ["/usr/local/bin/ratelimitd"]
