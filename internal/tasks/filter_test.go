package tasks

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
)

func TestValidateTaskFilter(t *testing.T) {
	t.Parallel()
	ptr := func(s string) *string { return &s }
	tm := func(s string) *time.Time {
		x, _ := time.Parse(time.RFC3339, s)
		return &x
	}
	if _, err := ValidateFilter(nil); err != nil {
		t.Fatalf("nil filter: %v", err)
	}
	tests := []struct {
		name       string
		in         db.TaskFilter
		wantFields []string
	}{
		{name: "empty", in: db.TaskFilter{}},
		{name: "search trimmed", in: db.TaskFilter{Search: ptr("  milk ")}},
		{name: "search 200 chars", in: db.TaskFilter{Search: ptr(strings.Repeat("é", 200))}},
		{name: "search 201 chars", in: db.TaskFilter{Search: ptr(strings.Repeat("é", 201))}, wantFields: []string{"search"}},
		{name: "search blank", in: db.TaskFilter{Search: ptr("   ")}, wantFields: []string{"search"}},
		{name: "tag upper-case", in: db.TaskFilter{Tag: ptr(" Work ")}},
		{name: "tag bad", in: db.TaskFilter{Tag: ptr("a b")}, wantFields: []string{"tag"}},
		{name: "tag empty", in: db.TaskFilter{Tag: ptr("")}, wantFields: []string{"tag"}},
		{name: "tag 51", in: db.TaskFilter{Tag: ptr(strings.Repeat("a", 51))}, wantFields: []string{"tag"}},
		{name: "due range", in: db.TaskFilter{DueAfter: tm("2026-01-01T00:00:00Z"), DueBefore: tm("2026-02-01T00:00:00Z")}},
		{name: "due range equal", in: db.TaskFilter{DueAfter: tm("2026-01-01T00:00:00Z"), DueBefore: tm("2026-01-01T00:00:00Z")},
			wantFields: []string{"dueAfter"}},
		{name: "due range inverted", in: db.TaskFilter{DueAfter: tm("2026-03-01T00:00:00Z"), DueBefore: tm("2026-01-01T00:00:00Z")},
			wantFields: []string{"dueAfter"}},
		{name: "dueBefore out of range", in: db.TaskFilter{DueBefore: tm("1999-01-01T00:00:00Z")}, wantFields: []string{"dueBefore"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.in
			_, err := ValidateFilter(&f)
			var got []string
			if err != nil {
				var app *apperr.Error
				if !errors.As(err, &app) || app.Code != apperr.BadUserInput {
					t.Fatalf("err = %v, want BAD_USER_INPUT", err)
				}
				got = violationFields(app.Violations)
			}
			if !slices.Equal(got, tc.wantFields) {
				t.Fatalf("violation fields = %q, want %q (err %v)", got, tc.wantFields, err)
			}
		})
	}

	// Valid values come back normalized; the input is left alone.
	in := db.TaskFilter{Search: ptr("  milk "), Tag: ptr(" Work ")}
	f, err := ValidateFilter(&in)
	if err != nil {
		t.Fatal(err)
	}
	if *in.Search != "  milk " {
		t.Fatalf("the input was changed: search=%q", *in.Search)
	}
	if *f.Search != "milk" || *f.Tag != "work" {
		t.Fatalf("normalized search=%q tag=%q, want milk, work", *f.Search, *f.Tag)
	}
}

// violationFields lists the fields of v in order.
func violationFields(v []apperr.Violation) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = x.Field
	}
	return out
}
