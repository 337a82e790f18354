package server_test

// Hostile inputs that cost more than they weigh: lists checked element by element before their
// length, and answers that grow with the number of bad elements.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// maxRefusalBytes bounds the answer to any refused input, however large the input.
const maxRefusalBytes = 4 << 10

func TestHostileInputAmplification(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	tags := func(n int, tag func(i int) string) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = tag(i)
		}
		return out
	}
	distinct := func(i int) string { return fmt.Sprintf("t%d", i) }
	invalid := func(i int) string { return fmt.Sprintf("!%d", i) }
	literal := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%q", invalid(i))
		}
		return `mutation { createTask(input: {title: "x", tags: [` + strings.Join(parts, ",") + `]}) { task { id } } }`
	}
	tests := []struct {
		name  string
		query string
		vars  map[string]any
	}{
		// De-duplicating before the length check took seconds of CPU.
		{"40,000 distinct tags", hostileCreateTask, map[string]any{"input": map[string]any{"title": "x", "tags": tags(40_000, distinct)}}},
		// One violation per tag, each also joined into the message: a 19 MB answer.
		{"100,000 invalid tags", hostileCreateTask, map[string]any{"input": map[string]any{"title": "x", "tags": tags(100_000, invalid)}}},
		{"4,000 invalid tags in the document", literal(4_000), nil},
		{"a 200 KiB title", hostileCreateTask, map[string]any{"input": map[string]any{"title": strings.Repeat("x", 200<<10)}}},
		{"bulk update with 40,000 tags to add", `mutation($p: BulkTaskPatch!) { bulkUpdateTasks(filter: {}, patch: $p) { id } }`,
			map[string]any{"p": map[string]any{"addTags": tags(40_000, distinct)}}},
		{"nodes with 50,000 ids", `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": tags(50_000, distinct)}},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := gqlPost(t, env, u.Token, tc.query, tc.vars)
			wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
			if len(r.Body) > maxRefusalBytes {
				t.Errorf("a %d-byte answer to a refused input, want at most %d", len(r.Body), maxRefusalBytes)
			}
			// No wall-clock bound here (it failed under -race on a busy machine): that the size is
			// checked before any per-element work is BenchmarkTags' figure and the guard's own tests.
			t.Logf("refused in %s, %d bytes", r.Elapsed, len(r.Body))
		})
	}
	wantRowsUnchanged(t, env, before)

	// Within the list bound, every tag is checked; the answer lists some violations and counts all.
	r := gqlPost(t, env, u.Token, literal(100), nil)
	wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
	if len(r.Errors) != 1 {
		t.Fatalf("%d errors, want 1: %.300s", len(r.Errors), r.Body)
	}
	ext := r.Errors[0].Extensions
	listed, _ := ext["violations"].([]any)
	if n, _ := ext["violationCount"].(float64); n != 100 || len(listed) == 0 || len(listed) > 10 {
		t.Errorf("violationCount = %v with %d listed, want 100 with at most 10 listed", ext["violationCount"], len(listed))
	}
	if !strings.Contains(r.Errors[0].Message, "and 90 more") {
		t.Errorf("message %q does not say how many more", r.Errors[0].Message)
	}
}
