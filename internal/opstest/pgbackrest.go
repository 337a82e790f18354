package opstest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// Stanza is the pgBackRest stanza of deploy/pgbackrest/pgbackrest.conf.
const Stanza = "taskgraph"

// PgBackRest backs up one throwaway primary with deploy/pgbackrest/pgbackrest.conf, its paths and
// port pointed at the cluster, into an encrypted repository of the test's own.
type PgBackRest struct {
	Bin     string
	Config  string // the rewritten configuration file
	Repo    string // the repository directory
	primary *testsupport.Cluster
}

// NewPgBackRest writes the configuration, turns on WAL archiving on primary with the settings of
// deploy/pgbackrest/postgresql-archiving.conf (restarting it) plus extra, creates the stanza and
// checks that archiving works.
func NewPgBackRest(t testing.TB, primary *testsupport.Cluster, extra string) *PgBackRest {
	t.Helper()
	b := &PgBackRest{Bin: Tool(t, "pgbackrest", "pgbackrest"), primary: primary}
	dir := filepath.Join(primary.Dir(), "pgbackrest")
	b.Repo = filepath.Join(dir, "repo")
	for _, d := range []string{dir, b.Repo, filepath.Join(dir, "log"), filepath.Join(dir, "lock")} {
		primary.MkdirOwned(t, d)
	}
	b.Config = filepath.Join(dir, "pgbackrest.conf")
	conf, err := RewriteINI(readRepoFile(t, "deploy/pgbackrest/pgbackrest.conf"), map[string]string{
		"repo1-path":      b.Repo,
		"log-path":        filepath.Join(dir, "log"),
		"lock-path":       filepath.Join(dir, "lock"),
		"pg1-path":        primary.DataDir(),
		"pg1-port":        strconv.Itoa(primary.Port),
		"pg1-socket-path": primary.Dir(),
	})
	if err != nil {
		t.Fatalf("deploy/pgbackrest/pgbackrest.conf: %v", err)
	}
	// The passphrase stays out of the committed file; production sets PGBACKREST_REPO1_CIPHER_PASS.
	conf = strings.Replace(conf, "[global]\n", "[global]\nrepo1-cipher-pass="+randomPassphrase(t)+"\n", 1)
	primary.WriteOwnedFile(t, b.Config, conf)

	archiving := strings.ReplaceAll(string(readRepoFile(t, "deploy/pgbackrest/postgresql-archiving.conf")),
		"pgbackrest --stanza=", fmt.Sprintf("%s --config=%s --stanza=", b.Bin, b.Config))
	primary.Configure(t, archiving+"\n"+extra)
	b.Run(t, "stanza-create")
	b.Run(t, "check")
	return b
}

// Run runs one pgBackRest command for the stanza as the server user and returns its output.
func (b *PgBackRest) Run(t testing.TB, command string, args ...string) string {
	t.Helper()
	out, err := b.primary.RunAsServer(t, b.Bin, append([]string{"--config=" + b.Config, "--stanza=" + Stanza, command}, args...)...)
	if err != nil {
		t.Fatalf("pgbackrest %s %s: %v\n%s\n--- primary log ---\n%s", command, strings.Join(args, " "), err, out, b.primary.LogTail())
	}
	return out
}

// Backup takes a backup of type full, diff or incr.
func (b *PgBackRest) Backup(t testing.TB, kind string) {
	t.Helper()
	b.Run(t, "backup", "--type="+kind)
}

// Restore restores into a new cluster called name and starts it (archiving off: a restored copy
// must not write into the repository of the original). args choose the backup and the target
// (--type=time --target=...). The new cluster may still be in recovery: see WaitPrimary.
func (b *PgBackRest) Restore(t testing.TB, name string, args ...string) *testsupport.Cluster {
	t.Helper()
	return testsupport.NewRestoredCluster(t, name, func(c *testsupport.Cluster) {
		all := append([]string{"--config=" + b.Config, "--stanza=" + Stanza, "--pg1-path=" + c.DataDir()}, args...)
		if out, err := c.RunAsServer(t, b.Bin, append(all, "restore")...); err != nil {
			t.Fatalf("pgbackrest restore %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}, "archive_mode = off")
}

// RewriteINI sets keys of an INI file (pgBackRest's format, key=value) to new values wherever they
// are; every key must be in the file, so the file and its users cannot drift apart silently.
func RewriteINI(content []byte, set map[string]string) (string, error) {
	seen := map[string]bool{}
	lines := strings.Split(string(content), "\n")
	for i, line := range lines {
		key, _, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		key = strings.TrimSpace(key)
		if v, ok := set[key]; ok {
			lines[i] = key + "=" + v
			seen[key] = true
		}
	}
	for k := range set {
		if !seen[k] {
			return "", fmt.Errorf("no setting %s", k)
		}
	}
	return strings.Join(lines, "\n"), nil
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(RepoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomPassphrase(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
