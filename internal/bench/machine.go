package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs       int
	CPUModel   string
	Memory     string
	Kernel     string
	GoVersion  string
	Postgres   string
	Redis      string
	LoadBefore string // /proc/loadavg: other work on the machine skews every number
	LoadAfter  string
	Code       string // the commit the benchmark binary was built from, and whether the tree was modified
}

// describe fills in the machine and the versions of the servers.
// report is the file the run writes (its own earlier version differing from HEAD says nothing
// about the code measured).
func (m *Machine) describe(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client, report string) error {
	m.CPUs = runtime.NumCPU()
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.GoVersion = runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	m.Code = buildRevision(report)
	if err := pool.QueryRow(ctx, `SELECT 'PostgreSQL ' || current_setting('server_version') || ', shared_buffers ' ||
		current_setting('shared_buffers')`).Scan(&m.Postgres); err != nil {
		return fmt.Errorf("read the PostgreSQL version: %w", err)
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("read the Redis version: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			m.Redis = "Redis " + v
		}
	}
	return nil
}

// buildRevision names the commit the running binary was built from (stamped by go build in a git
// work tree), noting uncommitted changes: the server under test is this same binary.
func buildRevision(report string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return workTreeRevision(report)
	}
	if modified == "true" {
		return fmt.Sprintf("%.12s plus uncommitted changes in the work tree", rev)
	}
	return fmt.Sprintf("%.12s", rev)
}

// workTreeRevision asks git about the current directory's work tree, for binaries built without VCS
// stamping (-buildvcs=false): the commit checked out and how many tracked files differ from it,
// the report aside.
func workTreeRevision(report string) string {
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (no VCS stamp in the binary, and git could not say)"
	}
	args := []string{"status", "--porcelain", "--untracked-files=no"}
	if report != "" {
		args = append(args, "--", ".", ":(exclude)"+report)
	}
	status, err := exec.Command("git", args...).Output()
	if err != nil {
		return strings.TrimSpace(string(head)) + " (work tree state unknown)"
	}
	lines := strings.TrimSpace(string(status))
	if lines == "" {
		return strings.TrimSpace(string(head)) + " (work tree clean at run time)"
	}
	return fmt.Sprintf("%s plus uncommitted changes to %d tracked files (work tree at run time)",
		strings.TrimSpace(string(head)), strings.Count(lines, "\n")+1)
}

// procField returns the value of the first "name : value" line of a /proc file ("" if absent).
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
