package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestHostileSuggestions: "Did you mean …" names parts of the schema to whoever probes it with typos.
// Production gives none, for any kind of name; development keeps them (they help).
func TestHostileSuggestions(t *testing.T) {
	t.Parallel()
	typos := map[string]string{
		"field":         `{ me { nmae } }`,
		"argument":      `{ tasks(firts: 1) { totalCount } }`,
		"enum value":    `mutation { createTask(input: {title: "x", priority: HIHG}) { task { id } } }`,
		"input field":   `mutation { createTask(input: {title: "x", tgas: ["a"]}) { task { id } } }`,
		"fragment type": `{ me { ...F } } fragment F on Usr { id }`,
		"inline type":   `{ me { ... on Usre { id } } }`,
		"order field":   `{ tasks(orderBy: {field: DUE, direction: ASC}) { totalCount } }`,
	}
	prod := testsupport.NewEnv(t, map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40)})
	dev := testsupport.NewEnv(t, nil)
	pu, du := prod.Register(t, "Ada"), dev.Register(t, "Ada")
	suggested := 0
	for kind, doc := range typos {
		t.Run(kind, func(t *testing.T) {
			r := gqlPost(t, prod, pu.Token, doc, nil)
			wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
			if strings.Contains(strings.ToLower(string(r.Body)), "did you mean") {
				t.Errorf("production suggests: %.400s", r.Body)
			}
			if d := gqlPost(t, dev, du.Token, doc, nil); strings.Contains(string(d.Body), "Did you mean") {
				suggested++
			}
		})
	}
	// Control: the same typos do draw suggestions in development, so the check above can fail.
	if suggested < 4 {
		t.Errorf("development suggested for %d of %d typos; the control does not exercise suggestions", suggested, len(typos))
	}
}
