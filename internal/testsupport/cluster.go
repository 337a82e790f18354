package testsupport

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
)

// Cluster is a throwaway PostgreSQL server of the test's own (not the shared one on 5432): a primary
// set up for streaming replication, or a streaming replica of one. Tests stop, start and restart it,
// and pause its WAL replay, to stage outages and replication lag against the real thing.
//
// PostgreSQL refuses to run as root, so when the test runs as root (CI does) every server process
// runs as the postgres OS user, and the cluster's directories belong to it.
type Cluster struct {
	Name    string // "primary" or "replica-N", for messages
	Port    int
	root    string // 0755 directory holding the data directory, the socket and the log
	dataDir string
	logFile string
	primary *Cluster // nil for a primary
	owner   *osUser  // nil: run as the current user
	replica int      // replicas made so far (for names)
}

// pgBinEnv overrides where the PostgreSQL server binaries are.
const pgBinEnv = "TEST_PG_BIN"

const (
	defaultPGBin = "/usr/lib/postgresql/15/bin"
	// pgCommandTimeout bounds every pg_ctl, initdb and pg_basebackup run.
	pgCommandTimeout = 60 * time.Second
	// pgWaitSeconds is how long pg_ctl waits for a start or stop.
	pgWaitSeconds = "30"
)

type osUser struct {
	name     string
	uid, gid int
}

func pgBin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv(pgBinEnv)
	if dir == "" {
		dir = defaultPGBin
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("PostgreSQL server binaries not found (%v); set %s to their directory", err, pgBinEnv)
	}
	return p
}

// serverUser is who runs PostgreSQL: the postgres OS user when the test runs as root.
func serverUser(t testing.TB) *osUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Fatalf("running as root, PostgreSQL must run as the postgres user, but runuser is missing: %v", err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, PostgreSQL must run as the postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &osUser{name: u.Username, uid: uid, gid: gid}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newRoot makes the cluster's directory under os.TempDir (t.TempDir is root-only, so the postgres
// user could not reach it) and removes it when the test ends.
func newRoot(t testing.TB, owner *osUser, prefix string) string {
	t.Helper()
	root, err := os.MkdirTemp(os.TempDir(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if owner != nil {
		if err := os.Chown(root, owner.uid, owner.gid); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// run runs a PostgreSQL program as the server user, bounded in time.
func (c *Cluster) run(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgCommandTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if c.owner != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.owner.name, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Dir = c.root // the test's working directory may be closed to the postgres user
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", filepath.Base(bin), pgCommandTimeout, err)
	}
	return string(out), err
}

func (c *Cluster) mustRun(t testing.TB, bin string, args ...string) {
	t.Helper()
	if out, err := c.run(t, bin, args...); err != nil {
		t.Fatalf("%s %s: %s: %v\n%s\n--- server log ---\n%s", c.Name, filepath.Base(bin), strings.Join(args, " "), err, out, c.logTail())
	}
}

// logTail returns the end of the server log, for failure messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// writeFile writes a file of the data directory, owned by the server user.
func (c *Cluster) writeFile(t testing.TB, name, content string, appendTo bool) {
	t.Helper()
	p := filepath.Join(c.dataDir, name)
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendTo {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if c.owner != nil {
		if err := os.Chown(p, c.owner.uid, c.owner.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// hbaConf trusts local and loopback connections, replication included: the servers listen on
// 127.0.0.1 only and live as long as one test.
const hbaConf = `local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
`

// settings are the per-server settings; the last value of a setting wins, so they go at the end.
func (c *Cluster) settings() string {
	return fmt.Sprintf(`
# taskgraph test cluster %s
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 60
shared_buffers = 16MB
wal_level = replica
max_wal_senders = 5
wal_keep_size = 64MB
hot_standby = on
fsync = off
full_page_writes = off
wal_receiver_status_interval = 1s
max_standby_streaming_delay = -1
logging_collector = off
`, c.Name, c.Port, c.root)
}

// NewCluster starts a throwaway primary on a free port of 127.0.0.1: wal_level=replica, replication
// connections allowed, every local connection trusted. It is stopped (immediately) and deleted when
// the test ends.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	initdb := pgBin(t, "initdb")
	owner := serverUser(t)
	c := &Cluster{Name: "primary", owner: owner}
	c.root = newRoot(t, owner, "taskgraph-pg-")
	c.dataDir = filepath.Join(c.root, "data")
	c.logFile = filepath.Join(c.root, "server.log")
	c.watchdog(t)
	c.mustRun(t, initdb, "-D", c.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	c.writeFile(t, "pg_hba.conf", hbaConf, false)
	c.startOnFreePort(t)
	return c
}

// startOnFreePort picks a port and starts the server, trying another port if the picked one was
// taken in between.
func (c *Cluster) startOnFreePort(t testing.TB) {
	t.Helper()
	t.Cleanup(func() { c.kill(t) })
	var lastErr error
	for range 3 {
		c.Port = freePort(t)
		c.writeFile(t, "postgresql.conf", c.settings(), true)
		out, err := c.run(t, pgBin(t, "pg_ctl"), "start", "-w", "-t", pgWaitSeconds, "-D", c.dataDir, "-l", c.logFile)
		if err == nil {
			return
		}
		lastErr = fmt.Errorf("%v\n%s", err, out)
		if !strings.Contains(c.logTail(), "already in use") {
			break
		}
	}
	t.Fatalf("%s: pg_ctl start: %v\n--- server log ---\n%s", c.Name, lastErr, c.logTail())
}

// watchdog covers the case where cleanups never run (the test binary killed, a -timeout panic): a
// small shell in its own process group waits for the test process to end, then stops the server and
// deletes the cluster. A normal end of the test stops the watchdog first.
func (c *Cluster) watchdog(t testing.TB) {
	t.Helper()
	pgCtl := []string{pgBin(t, "pg_ctl")}
	if c.owner != nil {
		pgCtl = []string{"runuser", "-u", c.owner.name, "--", pgCtl[0]}
	}
	script := `while kill -0 "$1" 2>/dev/null; do sleep 1; done; shift; dir="$1"; root="$2"; shift 2
"$@" stop -m immediate -w -t 30 -D "$dir" >/dev/null 2>&1; rm -rf "$root"`
	args := append([]string{"-c", script, "watchdog", strconv.Itoa(os.Getpid()), c.dataDir, c.root}, pgCtl...)
	cmd := exec.Command("sh", args...)
	cmd.Dir = c.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not killed along with go test on Ctrl-C
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the cluster watchdog: %v", err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { // registered before kill, so it runs after the server has been stopped
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
}

// kill stops the server at once, whatever state it is in (test cleanup).
func (c *Cluster) kill(t testing.TB) {
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err != nil {
		return // not running
	}
	if out, err := c.run(t, pgBin(t, "pg_ctl"), "stop", "-m", "immediate", "-w", "-t", pgWaitSeconds, "-D", c.dataDir); err != nil {
		t.Logf("%s: pg_ctl stop -m immediate: %v\n%s", c.Name, err, out)
	}
}

// URL is a connection URL for database db on this server.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", c.Port, db)
}

// Stop shuts the server down (fast: open sessions are ended) and waits until it is down.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mustRun(t, pgBin(t, "pg_ctl"), "stop", "-m", "fast", "-w", "-t", pgWaitSeconds, "-D", c.dataDir)
}

// Start starts a stopped server on the same port and waits until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mustRun(t, pgBin(t, "pg_ctl"), "start", "-w", "-t", pgWaitSeconds, "-D", c.dataDir, "-l", c.logFile)
}

// Restart is pg_ctl restart -m fast: every session ends, and the server is back when it returns.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mustRun(t, pgBin(t, "pg_ctl"), "restart", "-m", "fast", "-w", "-t", pgWaitSeconds, "-D", c.dataDir, "-l", c.logFile)
}

// Database creates (if needed) and migrates the taskgraph database on this primary and returns it
// with a counted pool, ready for NewEnvOn. The pool is closed when the test ends.
func (c *Cluster) Database(t testing.TB) *Database {
	t.Helper()
	if c.primary != nil {
		t.Fatalf("%s is a replica: run Database on the primary", c.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const name = "taskgraph"
	url := c.URL(name)
	if err := db.EnsureDatabase(ctx, url); err != nil {
		t.Fatalf("ensure database: %v", err)
	}
	counter := &StatementCounter{}
	pool, err := db.OpenPool(ctx, url, db.PoolOptions{MaxConns: 10, Tracer: counter})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := db.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &Database{Name: name, URL: url, Pool: pool, Counter: counter}
}

// NewReplica makes a streaming replica of this primary with pg_basebackup -R and starts it on
// another free port. It is stopped and deleted when the test ends.
func (c *Cluster) NewReplica(t testing.TB) *Cluster {
	t.Helper()
	if c.primary != nil {
		t.Fatalf("%s is a replica: replicas are made from the primary", c.Name)
	}
	c.replica++
	r := &Cluster{Name: fmt.Sprintf("replica-%d", c.replica), owner: c.owner, primary: c}
	r.root = newRoot(t, c.owner, "taskgraph-pg-replica-")
	r.dataDir = filepath.Join(r.root, "data")
	r.logFile = filepath.Join(r.root, "server.log")
	r.watchdog(t)
	r.mustRun(t, pgBin(t, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-D", r.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	r.startOnFreePort(t)
	r.WaitCaughtUp(t)
	return r
}

// exec runs one statement on this server's postgres database.
func (c *Cluster) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

func (c *Cluster) queryString(ctx context.Context, sql string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var s string
	err = conn.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

// PauseReplay stops the replica applying WAL: it keeps receiving, but its data stays as of now
// until ResumeReplay.
func (c *Cluster) PauseReplay(t testing.TB) {
	t.Helper()
	c.mustBeReplica(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatalf("%s: pause replay: %v", c.Name, err)
	}
	// From here on no new WAL record is applied; the state says "pause requested" until the startup
	// process next looks, "paused" after.
	state, err := c.queryString(ctx, `SELECT pg_get_wal_replay_pause_state()`)
	if err != nil || state == "not paused" {
		t.Fatalf("%s: replay pause state = %q, %v; want paused", c.Name, state, err)
	}
}

// ResumeReplay lets the replica apply WAL again.
func (c *Cluster) ResumeReplay(t testing.TB) {
	t.Helper()
	c.mustBeReplica(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.exec(ctx, `SELECT pg_wal_replay_resume()`); err != nil {
		t.Fatalf("%s: resume replay: %v", c.Name, err)
	}
}

// WaitCaughtUp waits (up to 15 s) until the replica has replayed everything the primary had written
// when it was called.
func (c *Cluster) WaitCaughtUp(t testing.TB) {
	t.Helper()
	c.mustBeReplica(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	target, err := c.primary.queryString(ctx, `SELECT pg_current_wal_lsn()::text`)
	if err != nil {
		t.Fatalf("primary WAL position: %v", err)
	}
	var last string
	for {
		last, err = c.queryString(ctx, `SELECT CASE WHEN pg_last_wal_replay_lsn() >= '`+target+`'::pg_lsn
			THEN 'yes' ELSE coalesce(pg_last_wal_replay_lsn()::text, 'none') END`)
		if err == nil && last == "yes" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not replay up to %s in time (at %s, err %v)\n--- log ---\n%s", c.Name, target, last, err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) mustBeReplica(t testing.TB) {
	t.Helper()
	if c.primary == nil {
		t.Fatalf("%s is not a replica", c.Name)
	}
}

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// Dir is the directory (0755, owned by the server user) holding the data directory, the socket and
// the log; tools the server runs (an archive_command) may keep their files there.
func (c *Cluster) Dir() string { return c.root }

// RunAsServer runs a program as the server's OS user (bounded in time, in Dir), for tools that must
// read or write the data directory, such as a backup tool.
func (c *Cluster) RunAsServer(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	return c.run(t, bin, args...)
}

// WriteOwnedFile writes a file anywhere under Dir, owned by the server user.
func (c *Cluster) WriteOwnedFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c.chown(t, path)
}

// MkdirOwned makes a directory under Dir owned by the server user (0700, as PostgreSQL and backup
// tools want their directories).
func (c *Cluster) MkdirOwned(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	c.chown(t, path)
}

func (c *Cluster) chown(t testing.TB, path string) {
	t.Helper()
	if c.owner != nil {
		if err := os.Chown(path, c.owner.uid, c.owner.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// Configure appends settings to postgresql.conf and restarts the server so that all of them apply
// (archive_mode, for one, needs a restart).
func (c *Cluster) Configure(t testing.TB, settings string) {
	t.Helper()
	c.writeFile(t, "postgresql.conf", "\n"+settings+"\n", true)
	c.Restart(t)
}

// NewRestoredCluster makes a cluster from a data directory that restore fills (a backup tool's
// restore into the empty, server-owned directory it is given), appends extra settings, and starts
// it on a free port of its own. A restore that ends in recovery is not waited for: see WaitPrimary.
// It is stopped and deleted when the test ends.
func NewRestoredCluster(t testing.TB, name string, restore func(c *Cluster), extra string) *Cluster {
	t.Helper()
	owner := serverUser(t)
	c := &Cluster{Name: name, owner: owner}
	c.root = newRoot(t, owner, "taskgraph-pg-"+name+"-")
	c.dataDir = filepath.Join(c.root, "data")
	c.logFile = filepath.Join(c.root, "server.log")
	c.watchdog(t)
	c.MkdirOwned(t, c.dataDir)
	restore(c)
	c.writeFile(t, "postgresql.conf", "\n"+extra+"\n", true)
	c.startOnFreePort(t)
	return c
}

// WaitPrimary waits (up to within) until the server accepts writes: recovery has ended and it has
// been promoted.
func (c *Cluster) WaitPrimary(t testing.TB, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	var err error
	for {
		last, err = c.queryString(ctx, `SELECT pg_is_in_recovery()::text`)
		if err == nil && last == "false" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not leave recovery within %s (in recovery: %s, err %v)\n--- log ---\n%s", c.Name, within, last, err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Query runs one query returning one text value on database db of this server.
func (c *Cluster) Query(t testing.TB, db, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		t.Fatalf("%s: connect: %v", c.Name, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %s: %v", c.Name, sql, err)
	}
	return s
}

// LogTail is the end of the server log, for failure messages.
func (c *Cluster) LogTail() string { return c.logTail() }

// Crash stops the server the way a power cut would (pg_ctl stop -m immediate): no shutdown
// checkpoint, and WAL not yet archived stays behind.
func (c *Cluster) Crash(t testing.TB) {
	t.Helper()
	c.mustRun(t, pgBin(t, "pg_ctl"), "stop", "-m", "immediate", "-w", "-t", pgWaitSeconds, "-D", c.dataDir)
}
