package schemaversion

import (
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskgraph/taskgraph/graph"
)

// SnapshotHeader starts the printed schema; graphql-inspector and other SDL tools read it as a comment.
const SnapshotHeader = `# The Taskgraph GraphQL schema as clients see it: printed from the server's answer to the standard
# introspection query (so the schema description and @defer are in, and uses of @auth are not).
# Do not edit: regenerate with ` + "`go test ./internal/schemaversion -update`" + ` and commit the result.
`

// Schema is the executable schema the server serves (gqlgen's, parsed from schema/*.graphqls).
func Schema() *ast.Schema {
	return graph.NewExecutableSchema(graph.Config{}).Schema()
}

// PrintSchema prints what introspecting the server shows, as SDL with descriptions (see
// PrintIntrospection). The output is deterministic.
func PrintSchema() string {
	data, err := Introspect(graph.NewExecutableSchema(graph.Config{}))
	if err != nil {
		panic(err) // the generated schema always answers its own introspection
	}
	sdl, err := PrintIntrospection(data)
	if err != nil {
		panic(err)
	}
	return SnapshotHeader + "\n" + sdl
}
