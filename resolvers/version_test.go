package resolvers_test

import (
	"testing"

	"github.com/taskgraph/taskgraph/internal/schemaversion"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// apiVersion needs no sign-in: clients check it before they have a token.
func TestAPIVersion(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	var data struct{ APIVersion string }
	env.Anonymous().Do(t, `{ apiVersion }`, nil).Decode(t, &data)
	if data.APIVersion != schemaversion.Version {
		t.Fatalf("apiVersion = %q, want %q", data.APIVersion, schemaversion.Version)
	}
}
