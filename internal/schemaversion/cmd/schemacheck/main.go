// Command schemacheck is the Go half of scripts/schema-check.sh, which runs graphql-inspector and
// hands its findings over as JSON.
//
//	schemacheck latest DIR
//	    prints the newest released schema, DIR/<MAJOR.MINOR.PATCH>.graphql
//	schemacheck introspect FILE
//	    prints the schema of an SDL file as clients see it (introspected, printed like the snapshot),
//	    so a release frozen by an older printer compares like with like
//	schemacheck check -diff FILE -changelog CHANGELOG.md [-baseline VERSION]
//	    prints the breaking and dangerous changes in FILE and exits 1 when a breaking change is not
//	    acknowledged in the changelog's Unreleased section by a line containing "BREAKING:" and the
//	    change's path (e.g. "- BREAKING: `Query.tasks` removed; use `Query.search`.")
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: schemacheck latest DIR | schemacheck introspect FILE | schemacheck check -diff FILE -changelog FILE [-baseline VERSION]")
		return 2
	}
	switch args[0] {
	case "latest":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: schemacheck latest DIR")
			return 2
		}
		releases, err := schemaversion.Releases(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "schemacheck:", err)
			return 2
		}
		fmt.Fprintln(stdout, filepath.Join(args[1], releases[len(releases)-1].String()+".graphql"))
		return 0
	case "introspect":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: schemacheck introspect FILE")
			return 2
		}
		sdl, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "schemacheck:", err)
			return 2
		}
		data, err := schemaversion.IntrospectSDL(args[1], string(sdl))
		if err == nil {
			var out string
			if out, err = schemaversion.PrintIntrospection(data); err == nil {
				fmt.Fprint(stdout, out)
				return 0
			}
		}
		fmt.Fprintln(stderr, "schemacheck:", err)
		return 2
	case "check":
		return check(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "schemacheck: unknown command %q\n", args[0])
		return 2
	}
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	diffFile := fs.String("diff", "", "graphql-inspector's changes as JSON (scripts/schema-diff-json.cjs)")
	changelogFile := fs.String("changelog", "CHANGELOG.md", "the changelog whose Unreleased section acknowledges breaking changes")
	baseline := fs.String("baseline", "", "the released version compared against (for the major-version note)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raw, err := os.ReadFile(*diffFile)
	if err != nil {
		fmt.Fprintln(stderr, "schemacheck:", err)
		return 2
	}
	var d schemaversion.Diff
	if err := json.Unmarshal(raw, &d); err != nil {
		fmt.Fprintf(stderr, "schemacheck: %s: %v\n", *diffFile, err)
		return 2
	}
	changelog, err := os.ReadFile(*changelogFile)
	if err != nil {
		fmt.Fprintln(stderr, "schemacheck:", err)
		return 2
	}
	v, err := schemaversion.Check(d, string(changelog))
	if err != nil {
		fmt.Fprintf(stderr, "schemacheck: %s: %v\n", *changelogFile, err)
		return 1
	}

	fmt.Fprintf(stdout, "schema check: %d breaking (%d acknowledged), %d dangerous, %d safe change(s)\n",
		len(d.Breaking), len(v.Acknowledged), len(d.Dangerous), len(d.Safe))
	for _, c := range v.Acknowledged {
		fmt.Fprintf(stdout, "  breaking, acknowledged in %s: %s — %s\n", *changelogFile, c.Key(), c.Message)
	}
	for _, c := range v.Dangerous {
		fmt.Fprintf(stdout, "  dangerous (not fatal): %s — %s\n", c.Key(), c.Message)
		if c.Reason != "" {
			fmt.Fprintf(stdout, "      %s\n", c.Reason)
		}
	}
	for _, c := range v.Unacknowledged {
		fmt.Fprintf(stdout, "  BREAKING, NOT acknowledged: %s — %s\n", c.Key(), c.Message)
	}
	if len(d.Breaking) > 0 && *baseline != "" {
		if base, err := schemaversion.ParseSemver(*baseline); err == nil {
			if cur, err := schemaversion.ParseSemver(schemaversion.Version); err == nil && cur[0] <= base[0] {
				fmt.Fprintf(stdout, "  note: breaking changes ship in a new major version; Version is %s and the last release is %s\n",
					cur, base)
			}
		}
	}
	if !v.OK() {
		fmt.Fprintf(stdout, "\nFAIL: %d breaking change(s) not acknowledged. Either keep the schema compatible (deprecate instead of\n"+
			"removing, add arguments as optional) or record each one under \"## [Unreleased]\" in %s, e.g.:\n",
			len(v.Unacknowledged), *changelogFile)
		for _, c := range v.Unacknowledged {
			fmt.Fprintf(stdout, "  %s\n", schemaversion.AcknowledgmentHint(c))
		}
		return 1
	}
	fmt.Fprintln(stdout, "schema check: OK")
	return 0
}
