// Package graph holds gqlgen's generated executable schema; nothing here is edited by hand but
// rewrites.go, the helpers internal/gqlgenpost rewrites the generated code to call.
package graph

// gqlgen resolves the paths in gqlgen.yml from the working directory, so generate from the module root.
//go:generate sh -c "cd .. && go run github.com/99designs/gqlgen generate && go run ./internal/gqlgenpost"
