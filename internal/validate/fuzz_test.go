package validate

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// FuzzInputs runs every input rule on arbitrary text. Whatever the input: no panic, at most
// apperr.MaxViolations violations listed, and a value that passes keeps the rule's promise (length,
// characters, NFC, tag shape, at most MaxTags tags).
func FuzzInputs(f *testing.F) {
	for _, s := range []string{
		"", " ", "Write the report", "ada@example.com", " ZOE\u0308@Example.com ", "a\x00b", "line\nbreak",
		"work,home,Work, urgent ,a/b", strings.Repeat("x", 300), strings.Repeat("t,", 120), "\xff\xfe",
		"zo\u00eb@example.com", "\"quoted\"@example.com", "a@b", "<ada@example.com>",
	} {
		f.Add(s)
	}
	tag := regexp.MustCompile(`^[a-z0-9][a-z0-9_:.\-]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		var v apperr.Violations
		if got := Text(&v, "title", s, 1, MaxTitleLen, false); v.Len() == 0 {
			if n := utf8.RuneCountInString(got); n < 1 || n > MaxTitleLen || strings.ContainsFunc(got, unicode.IsControl) {
				t.Fatalf("Text accepted %q", got)
			}
		}
		v = apperr.Violations{}
		if got := Email(&v, "email", s); v.Len() == 0 {
			if len(got) > MaxEmailLen || !norm.NFC.IsNormalString(got) || got != strings.TrimSpace(got) || !strings.Contains(got, "@") {
				t.Fatalf("Email accepted %q", got)
			}
			if EmailKey(got) != EmailKey(norm.NFD.String(got)) {
				t.Fatalf("the NFC and NFD spellings of %q have different keys", got)
			}
		}
		v = apperr.Violations{}
		tags := Tags(&v, "tags", strings.Split(s, ","))
		if len(v.List()) > apperr.MaxViolations {
			t.Fatalf("%d violations listed", len(v.List()))
		}
		if v.Len() == 0 {
			if len(tags) > MaxTags {
				t.Fatalf("%d tags accepted", len(tags))
			}
			seen := map[string]bool{}
			for _, x := range tags {
				if len(x) > MaxTagLen || !tag.MatchString(x) || seen[x] {
					t.Fatalf("Tags accepted %q in %q", x, tags)
				}
				seen[x] = true
			}
		}
		if err := v.Err(); err != nil && len(err.Error()) > 4096 {
			t.Fatalf("a %d-byte error", len(err.Error()))
		}
	})
}
