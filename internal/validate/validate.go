// Package validate holds the input rules the domain packages share: text lengths and characters,
// email addresses, passwords, due dates and tags. Each check records violations under the field
// name it is given (relative to the value the domain validates: "title", "tags[2]"); the transport
// places them under its own input path (apperr.Under).
//
// The database has CHECK constraints for the same limits as a last line of defence.
package validate

import (
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Input limits.
const (
	MaxNameLen        = 100
	MaxEmailLen       = 254
	MinPasswordLen    = 8
	MaxPasswordLen    = 128
	MaxTitleLen       = 200
	MaxDescriptionLen = 10000
	MaxTags           = 20
	MaxTagLen         = 50
	MaxSearchLen      = 200
	// MaxListLen bounds every list an input may hold (ids, tags before de-duplication, filters):
	// longer lists are refused whole, before any work per element.
	MaxListLen = 100
	// MaxStringBytes bounds every string an input may hold, before any work on it: far above the
	// longest accepted value (a description of MaxDescriptionLen characters of up to 4 bytes).
	MaxStringBytes = 64 << 10
)

var (
	tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_:.\-]*$`)
	minDueAt   = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDueAt   = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Text trims s and checks its length in characters and that it holds no control characters
// (multiline allows newlines and tabs). PostgreSQL rejects NUL in text, so it must never get there.
func Text(v *apperr.Violations, field, s string, minLen, maxLen int, multiline bool) string {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case n < minLen && minLen == 1:
		v.Add(field, "must not be empty")
	case n < minLen:
		v.Add(field, fmt.Sprintf("must be at least %d characters", minLen))
	case n > maxLen:
		v.Add(field, fmt.Sprintf("must be at most %d characters, got %d", maxLen, n))
	case strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r'))
	}):
		v.Add(field, "must not contain control characters")
	}
	return s
}

// Email normalizes s (NormalizeEmail) and checks that it is one plain address.
func Email(v *apperr.Violations, field, s string) string {
	if len(s) > 4*MaxEmailLen {
		v.Add(field, fmt.Sprintf("must be at most %d characters", MaxEmailLen))
		return s
	}
	s = NormalizeEmail(s)
	addr, err := mail.ParseAddress(s)
	switch {
	case s == "":
		v.Add(field, "must not be empty")
	case len(s) > MaxEmailLen:
		v.Add(field, fmt.Sprintf("must be at most %d characters", MaxEmailLen))
	case err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndex(s, "@")+1:], "."):
		v.Add(field, "must be a plain email address such as ada@example.com")
	}
	return s
}

// NormalizeEmail is the form an email is stored and looked up in: trimmed and in Unicode NFC, so
// "zoë" typed as one code point or as e + combining diaeresis is the same address. The database
// compares lower(email) (its unique index), which completes the comparison with case folding.
func NormalizeEmail(s string) string { return norm.NFC.String(strings.TrimSpace(s)) }

// EmailKey is the form of an email compared for uniqueness and sign-in: normalized and case-folded.
func EmailKey(s string) string { return strings.ToLower(NormalizeEmail(s)) }

// Password checks a new password's length.
func Password(v *apperr.Violations, field, s string) {
	n := utf8.RuneCountInString(s)
	if n < MinPasswordLen || n > MaxPasswordLen {
		v.Add(field, fmt.Sprintf("must be between %d and %d characters", MinPasswordLen, MaxPasswordLen))
	}
}

// TooLongForPassword reports whether s cannot be a password this server accepted: over-long
// candidates are refused before any hashing work.
func TooLongForPassword(s string) bool { return len(s) > 4*MaxPasswordLen }

// DueAt checks that a due date lies in the supported range.
func DueAt(v *apperr.Violations, field string, t *time.Time) {
	if t != nil && (t.Before(minDueAt) || !t.Before(maxDueAt)) {
		v.Add(field, "must be between 2000-01-01 and 2100-01-01")
	}
}

// Tags lower-cases, de-duplicates and checks tags, keeping their first-seen order. A list longer
// than MaxListLen is refused whole before any tag is looked at; the rest is linear in the list.
func Tags(v *apperr.Violations, field string, in []string) []string {
	if len(in) > MaxListLen {
		v.Add(field, fmt.Sprintf("at most %d tags, got %d", MaxTags, len(in)))
		return []string{}
	}
	out := make([]string, 0, len(in))
	seen := make(map[string]struct{}, len(in))
	for i, t := range in {
		t = strings.ToLower(strings.TrimSpace(t))
		if len(t) == 0 || len(t) > MaxTagLen || !tagPattern.MatchString(t) {
			v.Add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("must be 1..%d characters of letters, digits, '-', '_', ':' or '.'", MaxTagLen))
			continue
		}
		if _, dup := seen[t]; !dup {
			seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		v.Add(field, fmt.Sprintf("at most %d tags, got %d", MaxTags, len(out)))
	}
	return out
}

// Tag normalizes and checks one tag (a filter's).
func Tag(v *apperr.Violations, field, s string) string {
	t := strings.ToLower(strings.TrimSpace(s))
	if len(t) > MaxTagLen || !tagPattern.MatchString(t) {
		v.Add(field, "is not a valid tag")
	}
	return t
}
