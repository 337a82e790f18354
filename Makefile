# Taskgraph developer commands. `make test` is what CI runs (after .ci/run starts the services).
.PHONY: run test generate build

run:
	go run ./cmd/taskgraph

test:
	go test -count=1 -race ./...

generate:
	go generate ./...

build:
	CGO_ENABLED=0 go build -trimpath -o bin/taskgraph ./cmd/taskgraph
