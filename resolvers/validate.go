package resolvers

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Input limits. The database has CHECK constraints for the same limits as a last line of defence.
const (
	maxNameLen        = 100
	maxEmailLen       = 254
	minPasswordLen    = 8
	maxPasswordLen    = 128
	maxTitleLen       = 200
	maxDescriptionLen = 10000
	maxTags           = 20
	maxTagLen         = 50
	maxSearchLen      = 200
)

var (
	tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_:.\-]*$`)
	minDueAt   = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDueAt   = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// text trims s and checks its length in characters and that it holds no control characters
// (multiline allows newlines and tabs). PostgreSQL rejects NUL in text, so it must never get there.
func text(v *apperr.Violations, field, s string, minLen, maxLen int, multiline bool) string {
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

func email(v *apperr.Violations, field, s string) string {
	s = strings.TrimSpace(s)
	addr, err := mail.ParseAddress(s)
	switch {
	case s == "":
		v.Add(field, "must not be empty")
	case len(s) > maxEmailLen:
		v.Add(field, fmt.Sprintf("must be at most %d characters", maxEmailLen))
	case err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndex(s, "@")+1:], "."):
		v.Add(field, "must be a plain email address such as ada@example.com")
	}
	return s
}

func password(v *apperr.Violations, field, s string) {
	n := utf8.RuneCountInString(s)
	if n < minPasswordLen || n > maxPasswordLen {
		v.Add(field, fmt.Sprintf("must be between %d and %d characters", minPasswordLen, maxPasswordLen))
	}
}

func dueAt(v *apperr.Violations, field string, t *time.Time) {
	if t != nil && (t.Before(minDueAt) || !t.Before(maxDueAt)) {
		v.Add(field, "must be between 2000-01-01 and 2100-01-01")
	}
}

// tags lower-cases, de-duplicates and checks tags, keeping their first-seen order.
func tags(v *apperr.Violations, field string, in []string) []string {
	out := make([]string, 0, len(in))
	for i, t := range in {
		t = strings.ToLower(strings.TrimSpace(t))
		if len(t) == 0 || len(t) > maxTagLen || !tagPattern.MatchString(t) {
			v.Add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("must be 1..%d characters of letters, digits, '-', '_', ':' or '.'", maxTagLen))
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		v.Add(field, fmt.Sprintf("at most %d tags, got %d", maxTags, len(out)))
	}
	return out
}

// validateTaskFilter checks and normalizes a filter in place.
func validateTaskFilter(f *db.TaskFilter) error {
	if f == nil {
		return nil
	}
	var v apperr.Violations
	if f.Search != nil {
		s := text(&v, "filter.search", *f.Search, 1, maxSearchLen, false)
		f.Search = &s
	}
	if f.Tag != nil {
		t := strings.ToLower(strings.TrimSpace(*f.Tag))
		if len(t) > maxTagLen || !tagPattern.MatchString(t) {
			v.Add("filter.tag", "is not a valid tag")
		}
		f.Tag = &t
	}
	dueAt(&v, "filter.dueBefore", f.DueBefore)
	dueAt(&v, "filter.dueAfter", f.DueAfter)
	if f.DueBefore != nil && f.DueAfter != nil && !f.DueAfter.Before(*f.DueBefore) {
		v.Add("filter.dueAfter", "must be before dueBefore")
	}
	return v.Err()
}
