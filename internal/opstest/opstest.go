// Package opstest drives the operations tools of deploy/ against throwaway PostgreSQL clusters
// (testsupport.Cluster): pgBackRest for backups and point-in-time recovery, pg_auto_failover for
// primary failover. Its tests are integration tests: they skip under -short, and skip, naming the
// Debian package, when a tool is missing (.ci/run installs them).
package opstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Tool finds a command-line tool or skips t, naming the Debian package that has it.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/lib/postgresql/15/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("%s is not installed (apt-get install %s; .ci/run does): skipping", name, debianPackage)
	return ""
}

// RepoPath is a path of the repository (the deploy files the tests exercise).
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", rel)
}
