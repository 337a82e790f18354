# syntax=docker/dockerfile:1.7
#
# Taskgraph container image: a static Go binary on distroless (no shell, no package manager).
#
#   docker build -t taskgraph:local .
#   docker run --rm -p 8080:8080 -e APP_ENV=development \
#     -e DATABASE_URL=postgres://postgres@host.docker.internal:5432/taskgraph?sslmode=disable taskgraph:local
#
# Subcommands are passed as the container command: serve (default), migrate, set-role EMAIL ROLE,
# healthcheck (used by HEALTHCHECK below) and, once the job queue lands, worker.
# Settings come from the environment: `docker run --rm taskgraph:local --help` lists them.

############################
# Build stage
############################
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build

# Set by BuildKit for cross-builds (docker buildx build --platform linux/amd64,linux/arm64).
ARG TARGETOS=linux
ARG TARGETARCH=amd64

WORKDIR /src

# A static binary: no libc, so it runs on distroless/static (and scratch).
ENV CGO_ENABLED=0 \
    GOFLAGS=-trimpath

# Modules first, so editing source does not re-download them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/taskgraph ./cmd/taskgraph

############################
# Runtime stage
############################
# static-debian12 has CA certificates, tzdata and /etc/passwd with nonroot (65532); no shell, no curl.
FROM gcr.io/distroless/static-debian12:nonroot

LABEL org.opencontainers.image.title="taskgraph" \
      org.opencontainers.image.description="Taskgraph GraphQL task server" \
      org.opencontainers.image.source="https://github.com/taskgraph/taskgraph"

COPY --from=build /out/taskgraph /taskgraph

# Safe defaults for an image: production mode (GraphiQL and introspection off, JWT_SECRET required).
# Override with -e APP_ENV=development to try the image without a secret.
ENV APP_ENV=production \
    HTTP_ADDR=:8080

# Numeric UID:GID (distroless "nonroot") so Kubernetes runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

EXPOSE 8080

# `taskgraph healthcheck` GETs http://127.0.0.1:<port of HTTP_ADDR>/healthz and exits 0 (healthy) or 1.
# Distroless has no curl or shell, so the binary checks itself. Not used by Kubernetes (its probes are
# httpGet); one-shot and worker containers disable it in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/taskgraph", "healthcheck"]

ENTRYPOINT ["/taskgraph"]
CMD ["serve"]
