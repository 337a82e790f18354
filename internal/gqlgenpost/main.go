// Command gqlgenpost rewrites gqlgen's generated executor (graph/generated.go) after
// `gqlgen generate`, for cuts gqlgen's templates offer no option for. Each rewrite replaces an exact
// line of generated code with a call to a hand-written helper in graph/ that keeps gqlgen's
// behaviour; a rewrite whose line is missing fails the generation, so a gqlgen upgrade that changes
// the template cannot drop a cut silently. Run from the module root (graph/gen.go does).
package main

import (
	"bytes"
	"fmt"
	"os"
)

const generated = "graph/generated.go"

// rewrite replaces every occurrence of from (a whole generated line) with to.
type rewrite struct{ why, from, to string }

var rewrites = []rewrite{
	{
		why:  "build an object's @defer group only when its selection defers a field (graph/lazydefer.go)",
		from: "\tdeferred := graphql.NewDeferredGroup(ctx)\n",
		to:   "\tdeferred := newDeferredGroup(ctx, fields)\n",
	},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gqlgenpost:", err)
		os.Exit(1)
	}
}

func run() error {
	src, err := os.ReadFile(generated)
	if err != nil {
		return fmt.Errorf("read generated code: %w", err)
	}
	for _, r := range rewrites {
		n := bytes.Count(src, []byte(r.from))
		if n == 0 {
			return fmt.Errorf("%s: no %q in %s (did gqlgen's template change?)", r.why, r.from, generated)
		}
		src = bytes.ReplaceAll(src, []byte(r.from), []byte(r.to))
	}
	if err := os.WriteFile(generated, src, 0o644); err != nil {
		return fmt.Errorf("write generated code: %w", err)
	}
	return nil
}
