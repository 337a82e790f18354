package resolvers_test

import (
	"os"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.ReleaseDatabases()
	os.Exit(code)
}
