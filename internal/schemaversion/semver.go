package schemaversion

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Semver is a MAJOR.MINOR.PATCH version (no pre-release or build suffix).
type Semver [3]int

// ParseSemver parses "MAJOR.MINOR.PATCH" with no leading zeros.
func ParseSemver(s string) (Semver, error) {
	var v Semver
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p != strconv.Itoa(n) {
			return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
		}
		v[i] = n
	}
	return v, nil
}

func (v Semver) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Compare returns -1, 0 or +1 as v is older than, the same as or newer than w.
func (v Semver) Compare(w Semver) int { return slices.Compare(v[:], w[:]) }

// Releases lists the versions that have a schema/released/<version>.graphql file in dir, oldest first.
func Releases(dir string) ([]Semver, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.graphql"))
	if err != nil {
		return nil, err
	}
	var out []Semver
	for _, f := range files {
		v, err := ParseSemver(strings.TrimSuffix(filepath.Base(f), ".graphql"))
		if err != nil {
			return nil, fmt.Errorf("%s: released schemas are named <MAJOR.MINOR.PATCH>.graphql: %w", f, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s holds no released schema", dir)
	}
	slices.SortFunc(out, Semver.Compare)
	return out, nil
}
