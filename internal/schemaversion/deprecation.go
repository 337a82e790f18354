package schemaversion

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
)

// DeprecationReason is the form every @deprecated(reason:) must have: a removal date, normally
// followed by the replacement, as in "Removal after 2027-03-01; use Task.dueAt instead."
var DeprecationReason = regexp.MustCompile(`Removal after (\d{4}-\d{2}-\d{2})`)

// DeprecationProblems lists every deprecated field, argument, input field and enum value of s whose
// reason does not name a valid removal date ("Removal after YYYY-MM-DD"). Built-in definitions are
// skipped. The result is sorted by type name, then source order.
func DeprecationProblems(s *ast.Schema) []string {
	var problems []string
	check := func(where string, dirs ast.DirectiveList) {
		d := dirs.ForName("deprecated")
		if d == nil {
			return
		}
		reason := ""
		if a := d.Arguments.ForName("reason"); a != nil && a.Value != nil {
			reason = a.Value.Raw
		}
		m := DeprecationReason.FindStringSubmatch(reason)
		if m == nil {
			problems = append(problems, fmt.Sprintf("%s: @deprecated reason %q lacks %q (e.g. %q)",
				where, reason, "Removal after YYYY-MM-DD", "Removal after 2027-03-01; use X instead."))
			return
		}
		if _, err := time.Parse(time.DateOnly, m[1]); err != nil {
			problems = append(problems, fmt.Sprintf("%s: @deprecated removal date %q is not a date", where, m[1]))
		}
	}
	for _, name := range sortedTypeNames(s) {
		def := s.Types[name]
		if def.BuiltIn {
			continue
		}
		for _, f := range def.Fields {
			check(name+"."+f.Name, f.Directives)
			for _, a := range f.Arguments {
				check(name+"."+f.Name+"."+a.Name, a.Directives)
			}
		}
		for _, v := range def.EnumValues {
			check(name+"."+v.Name, v.Directives)
		}
	}
	for _, name := range sortedKeys(s.Directives) {
		d := s.Directives[name]
		if d.Position != nil && d.Position.Src != nil && d.Position.Src.BuiltIn {
			continue
		}
		for _, a := range d.Arguments {
			check("@"+name+"."+a.Name, a.Directives)
		}
	}
	return problems
}

func sortedTypeNames(s *ast.Schema) []string { return sortedKeys(s.Types) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
