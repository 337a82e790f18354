package db_test

import (
	"os"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestMain drops the package's template database after the tests (the external tests clone it).
func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.ReleaseDatabases()
	os.Exit(code)
}
