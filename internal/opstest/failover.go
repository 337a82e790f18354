package opstest

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Formation is a pg_auto_failover formation on loopback: a monitor and data nodes (the first one
// created becomes the primary, the others synchronous standbys), each run by its own `pg_autoctl`
// keeper in a process group of its own, with throwaway data directories and free ports. Everything
// it started is killed, and its directory deleted, when the test ends, by a watchdog even if the
// test binary dies.
type Formation struct {
	Monitor *Node
	Nodes   []*Node
	root    string
	pgBin   string
	autoctl string
	cred    *syscall.Credential // the postgres OS user when the test runs as root
	mu      sync.Mutex
	pgids   []int // process groups started, for the cleanup and the watchdog
}

// Node is one pg_autoctl-managed PostgreSQL (the monitor or a data node).
type Node struct {
	Name    string
	Port    int
	DataDir string
	logFile string
	pgid    int // the keeper's process group (0: not running)
	done    chan struct{}
	f       *Formation
}

// Failover timing of the monitor, much shorter than the defaults (20 s health checks, 30 s to give
// up on a primary that does not answer) so that the test measures the mechanism, not the defaults.
// docs/operations.md gives the production values.
var monitorSettings = map[string]string{
	"pgautofailover.health_check_period":               "1s",
	"pgautofailover.health_check_timeout":              "1s",
	"pgautofailover.health_check_max_retries":          "1",
	"pgautofailover.health_check_retry_delay":          "500ms",
	"pgautofailover.node_considered_unhealthy_timeout": "2s",
	"pgautofailover.primary_demote_timeout":            "3s",
}

// commandTimeout bounds each pg_autoctl create (initdb, registering, pg_basebackup).
const commandTimeout = 90 * time.Second

// NewFormation starts a monitor, a primary and standbys-1 synchronous standbys, and waits until the
// primary is "primary" with every standby "secondary".
func NewFormation(t testing.TB, standbys int) *Formation {
	t.Helper()
	f := &Formation{autoctl: Tool(t, "pg_autoctl", "postgresql-15-auto-failover"), pgBin: "/usr/lib/postgresql/15/bin"}
	if dir := os.Getenv("TEST_PG_BIN"); dir != "" {
		f.pgBin = dir
	}
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL must run as the postgres user: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		f.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	root, err := os.MkdirTemp(os.TempDir(), "taskgraph-autofailover-")
	if err != nil {
		t.Fatal(err)
	}
	f.root = root
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"config", "share", "run"} {
		p := filepath.Join(root, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	f.watchdog(t)
	t.Cleanup(f.killAll)

	f.Monitor = f.node("monitor")
	f.mustRun(t, f.Monitor, "create", "monitor", "--pgdata", f.Monitor.DataDir, "--pgport", strconv.Itoa(f.Monitor.Port),
		"--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl", filepath.Join(f.pgBin, "pg_ctl"))
	f.mustRun(t, f.Monitor, "config", "set", "--pgdata", f.Monitor.DataDir, "postgresql.listen_addresses", "127.0.0.1")
	f.start(t, f.Monitor, "run", "--pgdata", f.Monitor.DataDir)
	f.waitFor(t, 60*time.Second, "the monitor accepts connections", func() (bool, string) {
		err := f.Monitor.exec(context.Background(), "postgres", `SELECT 1`)
		return err == nil, fmt.Sprint(err)
	})
	for k, v := range monitorSettings {
		f.Monitor.mustExec(t, "postgres", fmt.Sprintf(`ALTER SYSTEM SET %s = '%s'`, k, v))
	}
	f.Monitor.mustExec(t, "postgres", `SELECT pg_reload_conf()`)

	for i := range standbys + 1 {
		n := f.node(fmt.Sprintf("node%d", i+1))
		f.Nodes = append(f.Nodes, n)
		f.start(t, n, "create", "postgres", "--pgdata", n.DataDir, "--pgport", strconv.Itoa(n.Port),
			"--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--name", n.Name, "--auth", "trust", "--no-ssl",
			"--monitor", f.MonitorURL(), "--pgctl", filepath.Join(f.pgBin, "pg_ctl"), "--dbname", "taskgraph", "--run")
		if i == 0 {
			f.WaitStates(t, 90*time.Second, map[string]string{n.Name: "single"})
			// pg_autoctl's pg_basebackup asks for a spread checkpoint, which would take minutes: a
			// target of 0 makes checkpoints run at full speed.
			n.mustExec(t, "postgres", `ALTER SYSTEM SET checkpoint_completion_target = 0`)
			n.mustExec(t, "postgres", `SELECT pg_reload_conf()`)
		}
	}
	want := map[string]string{f.Nodes[0].Name: "primary"}
	for _, n := range f.Nodes[1:] {
		want[n.Name] = "secondary"
	}
	f.WaitStates(t, 150*time.Second, want)
	return f
}

func (f *Formation) node(name string) *Node {
	return &Node{Name: name, Port: freePort(), DataDir: filepath.Join(f.root, name), logFile: filepath.Join(f.root, name+".log"), f: f}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// command is pg_autoctl as the server user, with its configuration and state under the formation's
// directory instead of the user's home.
func (f *Formation) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, f.autoctl, args...)
	cmd.Dir = f.root
	cmd.Env = []string{
		"PATH=" + f.pgBin + ":/usr/bin:/bin", "HOME=" + f.root, "PG_CONFIG=" + filepath.Join(f.pgBin, "pg_config"),
		// initdb takes the encoding from the locale: without one it makes SQL_ASCII databases, where
		// migration 00007's Unicode normalisation cannot run.
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8",
		"XDG_CONFIG_HOME=" + filepath.Join(f.root, "config"), "XDG_DATA_HOME=" + filepath.Join(f.root, "share"),
		"XDG_RUNTIME_DIR=" + filepath.Join(f.root, "run"), "PGHOST=127.0.0.1",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: f.cred}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// mustRun runs a pg_autoctl command to its end.
func (f *Formation) mustRun(t testing.TB, n *Node, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := f.command(ctx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_autoctl %s: %v\n%s", strings.Join(args, " "), err, tail(out))
	}
}

// start runs a long-lived pg_autoctl command (a keeper) for n in a process group of its own.
func (f *Formation) start(t testing.TB, n *Node, args ...string) {
	t.Helper()
	log, err := os.Create(n.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := f.command(context.Background(), args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		t.Fatalf("start pg_autoctl %s: %v", strings.Join(args, " "), err)
	}
	n.pgid = cmd.Process.Pid
	n.done = make(chan struct{})
	f.mu.Lock()
	f.pgids = append(f.pgids, n.pgid)
	pgids := strings.Trim(fmt.Sprint(f.pgids), "[]")
	f.mu.Unlock()
	// The watchdog reads this file when the test process is gone.
	if err := os.WriteFile(filepath.Join(f.root, "pgids"), []byte(pgids+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(n.done)
	}()
}

// Kill kills the node like a machine that dies: SIGKILL to its keeper, its postmaster and every
// process under them, all at once. It returns how many processes it killed.
func (f *Formation) Kill(t testing.TB, n *Node) int {
	t.Helper()
	pids := killTree([]int{n.pgid}, []int{postmasterPID(n.DataDir)})
	if n.done != nil {
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: pg_autoctl did not exit after SIGKILL", n.Name)
		}
	}
	if pid := postmasterPID(n.DataDir); pid > 0 && processAlive(pid) {
		t.Fatalf("%s: postmaster %d still alive after SIGKILL", n.Name, pid)
	}
	return len(pids)
}

// killAll kills everything the formation started (test cleanup).
func (f *Formation) killAll() {
	f.mu.Lock()
	pgids := append([]int(nil), f.pgids...)
	f.mu.Unlock()
	var roots []int
	for _, n := range append([]*Node{f.Monitor}, f.Nodes...) {
		if n != nil {
			roots = append(roots, postmasterPID(n.DataDir))
		}
	}
	killTree(pgids, roots)
	for _, n := range append([]*Node{f.Monitor}, f.Nodes...) {
		if n != nil && n.done != nil {
			select {
			case <-n.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
}

// watchdog covers the test binary dying before its cleanups run: a shell in its own process group
// waits for the test process to end, then kills every process group listed in root/pgids and every
// postmaster of the formation, and deletes the directory. A normal end of the test stops it after
// killing the processes itself.
func (f *Formation) watchdog(t testing.TB) {
	t.Helper()
	script := `while kill -0 "$1" 2>/dev/null; do sleep 1; done
root="$2"
for g in $(cat "$root/pgids" 2>/dev/null); do kill -STOP -"$g" 2>/dev/null; kill -KILL -"$g" 2>/dev/null; done
for p in "$root"/*/postmaster.pid; do [ -f "$p" ] && kill -KILL "$(head -n1 "$p")" 2>/dev/null; done
sleep 1; rm -rf "$root"`
	cmd := exec.Command("sh", "-c", script, "watchdog", strconv.Itoa(os.Getpid()), f.root)
	cmd.Dir = f.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the formation watchdog: %v", err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { // registered first, so it runs last: after killAll
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = os.RemoveAll(f.root)
	})
}

// MonitorURL is the monitor's connection URL for the keepers.
func (f *Formation) MonitorURL() string {
	return fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", f.Monitor.Port)
}

// URL is a multi-host URL for database db on every data node that connects to whichever is the
// primary (target_session_attrs=read-write): what Taskgraph's DATABASE_URL is with failover.
func (f *Formation) URL(db string) string {
	hosts := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		hosts[i] = fmt.Sprintf("127.0.0.1:%d", n.Port)
	}
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=2", strings.Join(hosts, ","), db)
}

// URL is a connection URL for database db on this node alone.
func (n *Node) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=2", n.Port, db)
}

// States is what the monitor says of each data node: "reported/assigned" by node name.
func (f *Formation) States(ctx context.Context) (map[string]string, error) {
	conn, err := pgx.Connect(ctx, f.Monitor.URL("pg_auto_failover"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT nodename, reportedstate::text || '/' || goalstate::text FROM pgautofailover.node`)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var name, state string
		if err := rows.Scan(&name, &state); err != nil {
			return nil, err
		}
		out[name] = state
	}
	return out, rows.Err()
}

// WaitStates waits until each named node has reported and been assigned its wanted state.
func (f *Formation) WaitStates(t testing.TB, within time.Duration, want map[string]string) {
	t.Helper()
	f.waitFor(t, within, fmt.Sprintf("nodes in states %v", want), func() (bool, string) {
		states, err := f.States(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for name, w := range want {
			if states[name] != w+"/"+w {
				return false, fmt.Sprint(states)
			}
		}
		return true, ""
	})
}

func (f *Formation) waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)\n%s", within, what, state, f.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logs is the end of every keeper's log, for failure messages.
func (f *Formation) logs() string {
	var b strings.Builder
	for _, n := range append([]*Node{f.Monitor}, f.Nodes...) {
		if n == nil {
			continue
		}
		out, _ := os.ReadFile(n.logFile)
		fmt.Fprintf(&b, "--- %s (pg_autoctl) ---\n%s\n", n.Name, tail(out))
	}
	return b.String()
}

// Logs is the end of every keeper's log.
func (f *Formation) Logs() string { return f.logs() }

func tail(b []byte) string {
	const keep = 3000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

func (n *Node) exec(ctx context.Context, db, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func (n *Node) mustExec(t testing.TB, db, sql string) {
	t.Helper()
	if err := n.exec(context.Background(), db, sql); err != nil {
		t.Fatalf("%s: %s: %v", n.Name, sql, err)
	}
}

// Query runs a one-value query on this node.
func (n *Node) Query(t testing.TB, db, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.URL(db))
	if err != nil {
		t.Fatalf("%s: connect: %v", n.Name, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %s: %v", n.Name, sql, err)
	}
	return s
}
