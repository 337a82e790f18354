package schemaversion

import (
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/taskgraph/taskgraph/graph"
)

// SnapshotHeader starts the printed schema; graphql-inspector and other SDL tools read it as a comment.
const SnapshotHeader = `# The Taskgraph GraphQL schema exactly as the server builds it from schema/*.graphqls.
# Do not edit: regenerate with ` + "`go test ./internal/schemaversion -update`" + ` and commit the result.
`

// Schema is the executable schema the server serves (gqlgen's, parsed from schema/*.graphqls).
func Schema() *ast.Schema {
	return graph.NewExecutableSchema(graph.Config{}).Schema()
}

// PrintSchema prints the executable schema as SDL with descriptions. The output is deterministic:
// directives and types are sorted by name, fields, arguments and enum values keep their source order,
// and built-in scalars, directives and introspection types are left out.
func PrintSchema() string {
	return SnapshotHeader + "\n" + Print(Schema())
}

// Print formats any schema the way PrintSchema does, without the header.
func Print(s *ast.Schema) string {
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithIndent("  ")).FormatSchema(s)
	return b.String()
}
