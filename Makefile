# Taskgraph developer commands. `make test` is what CI runs (after .ci/run starts the services).
.PHONY: run test generate build bench

run:
	go run ./cmd/taskgraph

test:
	go test -count=1 -race ./...

generate:
	go generate ./...

build:
	CGO_ENABLED=0 go build -trimpath -o bin/taskgraph ./cmd/taskgraph

# Load benchmark: creates and seeds the taskgraph_bench database (reused when its size matches; one it
# did not create is refused), runs the server against it in its default setup, with every cache off and
# with Redis, compares it with PostGraphile (npm, pinned), and writes docs/benchmarks.md. Pass flags
# with BENCH_FLAGS, e.g. make bench BENCH_FLAGS="-quick" (see bin/taskgraph bench -h).
bench: build
	bin/taskgraph bench $(BENCH_FLAGS)
