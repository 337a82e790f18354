package schemaversion

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Change is one difference graphql-inspector found between two schemas, as written by
// scripts/schema-diff-json.cjs.
type Change struct {
	// Type is graphql-inspector's change type, e.g. FIELD_REMOVED or ENUM_VALUE_REMOVED.
	Type string `json:"type"`
	// Path names what changed: "Type", "Type.field", "Type.field.argument", "Enum.VALUE", "@directive".
	// A few schema-level changes have none.
	Path    string `json:"path"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// Key is what a CHANGELOG acknowledgment must name: the path, or for a change without one its type.
func (c Change) Key() string {
	if c.Path != "" {
		return c.Path
	}
	return c.Type
}

// Diff is graphql-inspector's verdict, grouped by criticality.
type Diff struct {
	Breaking  []Change `json:"breaking"`
	Dangerous []Change `json:"dangerous"`
	Safe      []Change `json:"safe"`
}

// BreakingMarker starts (or appears in) a CHANGELOG line that acknowledges a breaking change.
const BreakingMarker = "BREAKING:"

var (
	heading        = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	unreleasedName = regexp.MustCompile(`(?i)^\[?unreleased\]?$`)
)

// ErrNoUnreleased means CHANGELOG.md has no "## [Unreleased]" heading.
var ErrNoUnreleased = errors.New(`CHANGELOG.md has no "## [Unreleased]" section`)

// UnreleasedLines returns the lines of the changelog's Unreleased section: from its heading (any
// level, "Unreleased" or "[Unreleased]", any case) to the next heading of the same or a higher
// level. Lines inside HTML comments (<!-- ... -->) are dropped, so templates and examples there never
// acknowledge anything.
func UnreleasedLines(changelog string) ([]string, error) {
	lines := strings.Split(strings.ReplaceAll(changelog, "\r\n", "\n"), "\n")
	level := 0
	var out []string
	inComment, inFence := false, false
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inFence = !inFence
		}
		if !inFence && !inComment {
			if m := heading.FindStringSubmatch(line); m != nil {
				if level > 0 && len(m[1]) <= level {
					break
				}
				if level == 0 && unreleasedName.MatchString(m[2]) {
					level = len(m[1])
					continue
				}
			}
		}
		if level == 0 {
			continue
		}
		// Drop HTML comments, which may span lines.
		var kept strings.Builder
		rest := line
		for rest != "" {
			if inComment {
				end := strings.Index(rest, "-->")
				if end < 0 {
					rest = ""
					break
				}
				inComment = false
				rest = rest[end+3:]
				continue
			}
			start := strings.Index(rest, "<!--")
			if start < 0 {
				kept.WriteString(rest)
				break
			}
			kept.WriteString(rest[:start])
			inComment = true
			rest = rest[start+4:]
		}
		out = append(out, kept.String())
	}
	if level == 0 {
		return nil, ErrNoUnreleased
	}
	return out, nil
}

// Acknowledges reports whether one of the lines contains BreakingMarker and names key as a whole
// path: "Query.task" is not acknowledged by a line about "Query.tasks" or "Query.task.id". A path
// may be wrapped in backticks and followed by punctuation.
func Acknowledges(lines []string, key string) bool {
	for _, line := range lines {
		if !strings.Contains(line, BreakingMarker) {
			continue
		}
		for i := 0; ; {
			j := strings.Index(line[i:], key)
			if j < 0 {
				break
			}
			start, end := i+j, i+j+len(key)
			if (start == 0 || !pathChar(line[start-1])) && boundaryAfter(line, end) {
				return true
			}
			i = start + 1
		}
	}
	return false
}

func pathChar(c byte) bool {
	return c == '_' || c == '.' || c == '@' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// boundaryAfter: the path ends at end unless an identifier character, or a dot that starts a longer
// path, follows. A dot that ends a sentence is fine.
func boundaryAfter(line string, end int) bool {
	if end == len(line) {
		return true
	}
	c := line[end]
	if c == '.' {
		return end+1 == len(line) || !pathChar(line[end+1])
	}
	return !pathChar(c)
}

// Verdict is the outcome of Check.
type Verdict struct {
	Acknowledged   []Change // breaking changes named in the Unreleased section
	Unacknowledged []Change // breaking changes that fail the check
	Dangerous      []Change // reported, never fatal
}

// OK reports whether the check passes.
func (v Verdict) OK() bool { return len(v.Unacknowledged) == 0 }

// Check sorts d's breaking changes into those the changelog's Unreleased section acknowledges and
// those it does not. A changelog without an Unreleased section is an error only when there are
// breaking changes to acknowledge.
func Check(d Diff, changelog string) (Verdict, error) {
	v := Verdict{Dangerous: d.Dangerous}
	if len(d.Breaking) == 0 {
		return v, nil
	}
	lines, err := UnreleasedLines(changelog)
	if err != nil {
		return v, err
	}
	for _, c := range d.Breaking {
		if Acknowledges(lines, c.Key()) {
			v.Acknowledged = append(v.Acknowledged, c)
		} else {
			v.Unacknowledged = append(v.Unacknowledged, c)
		}
	}
	return v, nil
}

// AcknowledgmentHint is an example CHANGELOG line that acknowledges c.
func AcknowledgmentHint(c Change) string {
	return fmt.Sprintf("- %s `%s`: %s", BreakingMarker, c.Key(), c.Message)
}
