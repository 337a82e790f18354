package validate

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// violationFields lists the fields of v in order.
func violationFields(v apperr.Violations) []string {
	out := make([]string, v.Len())
	for i, x := range v.List() {
		out[i] = x.Field
	}
	return out
}

func TestText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		min, max  int
		multiline bool
		want      string // the returned (trimmed) value
		wantErr   string // substring of the violation message; "" means valid
	}{
		{name: "trimmed", in: "  hello \t", min: 1, max: 200, want: "hello"},
		{name: "empty", in: "", min: 1, max: 200, wantErr: "must not be empty"},
		{name: "only whitespace", in: " \t\n ", min: 1, max: 200, wantErr: "must not be empty"},
		{name: "empty allowed with min 0", in: "", min: 0, max: 10, want: ""},
		{name: "below larger minimum", in: "ab", min: 3, max: 10, wantErr: "at least 3"},
		{name: "exactly max ASCII", in: strings.Repeat("a", 200), min: 1, max: 200, want: strings.Repeat("a", 200)},
		{name: "max plus one ASCII", in: strings.Repeat("a", 201), min: 1, max: 200, wantErr: "at most 200 characters, got 201"},
		// "é" is two bytes: limits count characters, not bytes.
		{name: "200 two-byte chars", in: strings.Repeat("é", 200), min: 1, max: 200, want: strings.Repeat("é", 200)},
		{name: "201 two-byte chars", in: strings.Repeat("é", 201), min: 1, max: 200, wantErr: "got 201"},
		{name: "200 four-byte chars", in: strings.Repeat("😀", 200), min: 1, max: 200, want: strings.Repeat("😀", 200)},
		{name: "surrounding spaces do not count", in: "  " + strings.Repeat("a", 200) + "  ", min: 1, max: 200, want: strings.Repeat("a", 200)},
		{name: "NUL", in: "a\x00b", min: 1, max: 200, wantErr: "control characters"},
		{name: "bell", in: "a\x07b", min: 1, max: 200, wantErr: "control characters"},
		{name: "escape", in: "a\x1bb", min: 1, max: 200, wantErr: "control characters"},
		{name: "DEL", in: "a\x7fb", min: 1, max: 200, wantErr: "control characters"},
		{name: "C1 control", in: "a\u0085b", min: 1, max: 200, wantErr: "control characters"},
		{name: "newline single-line", in: "a\nb", min: 1, max: 200, wantErr: "control characters"},
		{name: "tab single-line", in: "a\tb", min: 1, max: 200, wantErr: "control characters"},
		{name: "newline multiline", in: "a\nb\r\nc\td", min: 0, max: 200, multiline: true, want: "a\nb\r\nc\td"},
		{name: "NUL multiline", in: "a\x00b", min: 0, max: 200, multiline: true, wantErr: "control characters"},
		{name: "unicode letters", in: "Zoë 東京", min: 1, max: 200, want: "Zoë 東京"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v apperr.Violations
			got := Text(&v, "input.title", tc.in, tc.min, tc.max, tc.multiline)
			if tc.wantErr == "" {
				if v.Len() != 0 {
					t.Fatalf("violations = %+v, want none", v)
				}
				if got != tc.want {
					t.Fatalf("text = %q, want %q", got, tc.want)
				}
				return
			}
			if v.Len() != 1 || v.List()[0].Field != "input.title" || !strings.Contains(v.List()[0].Message, tc.wantErr) {
				t.Fatalf("violations = %+v, want one for input.title containing %q", v, tc.wantErr)
			}
		})
	}
}

func TestEmail(t *testing.T) {
	t.Parallel()
	local := strings.Repeat("a", 64)
	// A 254-character address: 64 + "@" + 185 + ".com".
	longest := local + "@" + strings.Repeat("b", 185) + ".com"
	if len(longest) != 254 {
		t.Fatalf("setup: len = %d", len(longest))
	}
	tests := []struct {
		in, want string
		valid    bool
	}{
		{in: "ada@example.com", want: "ada@example.com", valid: true},
		{in: "  ada@example.com  ", want: "ada@example.com", valid: true},
		{in: "Ada.Lovelace+x@Example.co.uk", want: "Ada.Lovelace+x@Example.co.uk", valid: true},
		{in: longest, want: longest, valid: true},
		{in: longest[:64] + "x" + longest[64:]}, // 255
		{in: ""},
		{in: "   "},
		{in: "ada"},
		{in: "ada@"},
		{in: "@example.com"},
		{in: "ada@localhost"},
		{in: "Ada <ada@example.com>"},
		{in: "ada@example.com, bob@example.com"},
		{in: "ada @example.com"},
	}
	for _, tc := range tests {
		var v apperr.Violations
		got := Email(&v, "input.email", tc.in)
		if tc.valid {
			if v.Len() != 0 || got != tc.want {
				t.Errorf("Email(%q) = %q, %+v; want %q, valid", tc.in, got, v, tc.want)
			}
			continue
		}
		if v.Len() != 1 || v.List()[0].Field != "input.email" {
			t.Errorf("Email(%q): violations = %+v, want one for input.email", tc.in, v)
		}
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		valid bool
	}{
		{in: strings.Repeat("a", 7)},
		{in: strings.Repeat("a", 8), valid: true},
		{in: strings.Repeat("a", 128), valid: true},
		{in: strings.Repeat("a", 129)},
		{in: ""},
		// Counted in characters: 7 × "é" is 14 bytes but too short; 128 × "é" is 256 bytes but fine.
		{in: strings.Repeat("é", 7)},
		{in: strings.Repeat("é", 8), valid: true},
		{in: strings.Repeat("é", 128), valid: true},
		{in: strings.Repeat("é", 129)},
	}
	for _, tc := range tests {
		var v apperr.Violations
		Password(&v, "input.password", tc.in)
		if tc.valid != (v.Len() == 0) {
			t.Errorf("Password(%d chars, %d bytes): violations = %+v, want valid=%v", len([]rune(tc.in)), len(tc.in), v, tc.valid)
		}
		if !tc.valid && v.Len() == 1 && v.List()[0].Field != "input.password" {
			t.Errorf("field = %q, want input.password", v.List()[0].Field)
		}
	}
}

func TestDueAt(t *testing.T) {
	t.Parallel()
	at := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &tm
	}
	tests := []struct {
		name  string
		in    *time.Time
		valid bool
	}{
		{name: "nil", in: nil, valid: true},
		{name: "first instant of 2000", in: at("2000-01-01T00:00:00Z"), valid: true},
		{name: "just before 2000", in: at("1999-12-31T23:59:59.999999Z")},
		{name: "1999", in: at("1999-06-01T00:00:00Z")},
		{name: "ordinary", in: at("2026-11-29T09:00:00+01:00"), valid: true},
		{name: "last instant before 2100", in: at("2099-12-31T23:59:59.999999Z"), valid: true},
		{name: "2100 exactly", in: at("2100-01-01T00:00:00Z")},
		{name: "after 2100", in: at("2150-01-01T00:00:00Z")},
		// 2000-01-01T00:30:00+01:00 is 1999-12-31T23:30:00Z: the bound is an instant, not a wall-clock date.
		{name: "offset moves before 2000", in: at("2000-01-01T00:30:00+01:00")},
		{name: "zero time", in: &time.Time{}},
	}
	for _, tc := range tests {
		var v apperr.Violations
		DueAt(&v, "input.dueAt", tc.in)
		if tc.valid != (v.Len() == 0) {
			t.Errorf("%s: violations = %+v, want valid=%v", tc.name, v, tc.valid)
		}
		if v.Len() == 1 && v.List()[0].Field != "input.dueAt" {
			t.Errorf("%s: field = %q, want input.dueAt", tc.name, v.List()[0].Field)
		}
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "t" + strings.Repeat("x", i)
		}
		return out
	}
	tests := []struct {
		name       string
		in         []string
		want       []string
		wantFields []string
	}{
		{name: "nil", in: nil, want: []string{}},
		{name: "lower-cased and de-duplicated in first-seen order",
			in: []string{"Work", "home", "WORK", " urgent ", "Home"}, want: []string{"work", "home", "urgent"}},
		{name: "allowed punctuation", in: []string{"a-b_c:d.e", "v1.2", "x"}, want: []string{"a-b_c:d.e", "v1.2", "x"}},
		{name: "50 chars", in: []string{strings.Repeat("a", 50)}, want: []string{strings.Repeat("a", 50)}},
		{name: "51 chars", in: []string{"ok", strings.Repeat("a", 51)}, want: []string{"ok"}, wantFields: []string{"input.tags[1]"}},
		{name: "empty", in: []string{""}, want: []string{}, wantFields: []string{"input.tags[0]"}},
		{name: "blank", in: []string{"  "}, want: []string{}, wantFields: []string{"input.tags[0]"}},
		{name: "space inside", in: []string{"a b"}, want: []string{}, wantFields: []string{"input.tags[0]"}},
		{name: "bad chars", in: []string{"ok", "a/b", "c#", "d!"}, want: []string{"ok"},
			wantFields: []string{"input.tags[1]", "input.tags[2]", "input.tags[3]"}},
		{name: "non-ASCII", in: []string{"café"}, want: []string{}, wantFields: []string{"input.tags[0]"}},
		{name: "control char", in: []string{"a\x00"}, want: []string{}, wantFields: []string{"input.tags[0]"}},
		{name: "20 distinct", in: many(20), want: many(20)},
		{name: "21 distinct", in: many(21), want: many(21), wantFields: []string{"input.tags"}},
		{name: "duplicates do not count towards the limit",
			in: append(many(20), "T", "TX", "t"), want: many(20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v apperr.Violations
			got := Tags(&v, "input.tags", tc.in)
			if got == nil {
				t.Fatal("tags returned nil; want a non-nil slice")
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("tags = %q, want %q", got, tc.want)
			}
			if f := violationFields(v); !slices.Equal(f, tc.wantFields) {
				t.Errorf("violation fields = %q, want %q (%+v)", f, tc.wantFields, v)
			}
		})
	}
}

// BenchmarkTags: tags cost linear time, and an over-long list costs nothing per element.
func BenchmarkTags(b *testing.B) {
	for _, n := range []int{20, 100, 40_000} {
		in := make([]string, n)
		for i := range in {
			in[i] = fmt.Sprintf("Tag-%d", i)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				var v apperr.Violations
				Tags(&v, "tags", in)
			}
		})
	}
}
