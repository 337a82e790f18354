// Package bench is Taskgraph's load benchmark (`taskgraph bench`, `make bench`).
//
// One run seeds a dedicated database (only when its size differs from the one asked for), starts the
// real server as a separate process, drives it over HTTP with a fixed number of concurrent clients for
// a fixed time per scenario, and measures the ceiling in the same run: the SQL each scenario needs, run
// directly through pgx at the same concurrency. It does so with the Redis cache off and on, then
// writes docs/benchmarks.md and prints the table.
//
// Everything it talks to is on the loopback interface, and every loop in it is bounded in time.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is one benchmark run. DefaultConfig and QuickConfig give complete values.
type Config struct {
	Users       int           // users seeded
	Tasks       int           // tasks seeded
	Concurrency int           // concurrent clients, for GraphQL and for the ceiling alike
	Duration    time.Duration // measured time per scenario and mode
	Warmup      time.Duration // unmeasured load before each measurement
	DatabaseURL string        // the benchmark's own database (created, migrated and seeded as needed)
	RedisURL    string        // the Redis database the cached server uses; flushed before the cached run
	Out         string        // the Markdown report; "" writes none
	Scenarios   []string      // scenario names to run, in order

	BenchUsers  int   // users that sign in and drive the load (each gets TasksPerBenchUser tasks)
	DeepOffset  int   // rows before the cursor of the deep page
	DBMaxConns  int32 // pool size of the server and of the ceiling
	StmtSamples int   // requests per scenario in the statement-count pass
	Gzip        bool  // clients ask for gzip (the server then compresses answers over 1 KiB)

	// ForceReseed lets the benchmark take over a database it did not create (it refuses one otherwise)
	// and reseeds it even when it already holds the wanted seed.
	ForceReseed bool
	// ForceFlush lets the benchmark flush a Redis database holding keys it did not write (it refuses
	// one otherwise).
	ForceFlush bool

	// Peer runs the comparison with PostGraphile (peer.go) after the Taskgraph-only scenarios.
	Peer bool
	// PeerRounds is how many adjacent (PostGraphile, Taskgraph) pairs each scenario and mode gets.
	PeerRounds int
	// PeerDir is where PostGraphile is installed ("" means the user's cache directory).
	PeerDir string

	// Timeout ends the whole run (with an error) if it is still going; 0: no limit beyond each step's own.
	Timeout time.Duration

	// ProfileDir receives a CPU profile of ProfileScenario (run in-process) for every mode that
	// missed a target; "" profiles nothing.
	ProfileDir string
	// ProfileScenario is the scenario those profiles serve (page unless told).
	ProfileScenario string
	// ServerCommand starts the server; nil means this executable with the argument "serve".
	ServerCommand []string
	// ServerEnv is added to the server's environment (after the benchmark's own settings).
	ServerEnv []string
	// Command is the command line shown in the report.
	Command string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Scenario names.
const (
	ScenarioPage = "page"
	ScenarioTask = "task"
	ScenarioDeep = "deep"
	ScenarioMix  = "mix"
)

// AllScenarios lists every scenario in report order.
func AllScenarios() []string { return []string{ScenarioPage, ScenarioTask, ScenarioDeep, ScenarioMix} }

// DefaultConfig is the full-size benchmark the issue describes.
func DefaultConfig() Config {
	return Config{
		Users:           10_000,
		Tasks:           1_000_000,
		Concurrency:     32,
		Duration:        10 * time.Second,
		Warmup:          2 * time.Second,
		DatabaseURL:     "postgres://postgres@127.0.0.1:5432/taskgraph_bench?sslmode=disable",
		RedisURL:        "redis://127.0.0.1:6379/15",
		Out:             filepath.Join("docs", "benchmarks.md"),
		Scenarios:       AllScenarios(),
		BenchUsers:      64,
		DeepOffset:      5_000,
		DBMaxConns:      20,
		StmtSamples:     200,
		ProfileDir:      filepath.Join(os.TempDir(), "taskgraph-bench"),
		ProfileScenario: ScenarioPage,
		Peer:            true,
		PeerRounds:      3,
		Timeout:         90 * time.Minute,
	}
}

// QuickConfig is a tiny run for tests and smoke checks: seconds, not minutes.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Users, c.Tasks = 50, 2_000
	c.Concurrency = 4
	c.Duration, c.Warmup = time.Second, 250*time.Millisecond
	c.BenchUsers, c.DeepOffset = 64, 100
	c.StmtSamples = 40
	c.PeerRounds = 1
	return c
}

// TasksPerBenchUser is how many tasks each signing-in user owns: enough for a page DeepOffset rows in.
func (c Config) TasksPerBenchUser() int { return c.DeepOffset + 200 }

// benchUsers is how many users sign in: BenchUsers, fewer when the seed is too small to give each of
// them TasksPerBenchUser tasks while leaving half the tasks to everyone else.
func (c Config) benchUsers() int {
	n := min(c.BenchUsers, c.Users, c.Tasks/2/c.TasksPerBenchUser())
	return max(n, 0)
}

// Validate checks sizes and that every address is on this machine.
func (c Config) Validate() error {
	var problems []string
	if c.Users < 1 || c.Tasks < 1 || c.Concurrency < 1 || c.BenchUsers < 1 || c.DeepOffset < 1 || c.DBMaxConns < 1 {
		problems = append(problems, "users, tasks, concurrency, bench users, deep offset and pool size must be positive")
	}
	if c.Peer && c.PeerRounds < 1 {
		problems = append(problems, "the comparison with PostGraphile needs at least one round")
	}
	if c.Timeout < 0 {
		problems = append(problems, "timeout must not be negative")
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		problems = append(problems, "duration must be positive and warmup not negative")
	}
	if c.benchUsers() < 1 {
		problems = append(problems, fmt.Sprintf("%d tasks are too few: the deep page needs a user with %d tasks, and half the tasks go to other users",
			c.Tasks, c.TasksPerBenchUser()))
	}
	if len(c.Scenarios) == 0 {
		problems = append(problems, "no scenario selected")
	}
	if !slices.Contains(AllScenarios(), c.ProfileScenario) {
		problems = append(problems, fmt.Sprintf("unknown profile scenario %q (known: %s)", c.ProfileScenario, strings.Join(AllScenarios(), ", ")))
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(AllScenarios(), s) {
			problems = append(problems, fmt.Sprintf("unknown scenario %q (known: %s)", s, strings.Join(AllScenarios(), ", ")))
		}
	}
	for name, raw := range map[string]string{"-database": c.DatabaseURL, "-redis": c.RedisURL} {
		if err := checkLoopback(raw); err != nil {
			problems = append(problems, name+": "+err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New("bench: " + strings.Join(problems, "; "))
	}
	return nil
}

// checkLoopback refuses URLs whose host is not this machine: the benchmark sends load, so it must
// never be pointed at a shared server by mistake.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("host %q is not a loopback address (127.0.0.1, ::1 or localhost)", host)
}

// ParseFlags turns `taskgraph bench` arguments into a Config.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("taskgraph bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: taskgraph bench [flags]\n\nSeeds a database, starts the server, drives it over HTTP, measures the direct-SQL ceiling\nand writes the results. Flags:")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Users, "users", c.Users, "users to seed")
	fs.IntVar(&c.Tasks, "tasks", c.Tasks, "tasks to seed")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "concurrent clients")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured time per scenario and mode")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "unmeasured load before each measurement")
	fs.StringVar(&c.DatabaseURL, "database", c.DatabaseURL, "PostgreSQL URL of the benchmark's own database: created and marked when missing, reseeded when its size differs; one the benchmark did not create is refused")
	fs.StringVar(&c.RedisURL, "redis", c.RedisURL, "Redis URL for the cached run (flushed; refused when it holds keys the benchmark did not write)")
	fs.BoolVar(&c.ForceReseed, "force-reseed", false, "reseed even when the seed is current, and take over a -database that taskgraph bench did not create (deletes its data)")
	fs.BoolVar(&c.ForceFlush, "force-flush", false, "flush the -redis database even when it holds keys the benchmark did not write")
	fs.StringVar(&c.Out, "out", c.Out, "Markdown report to write (empty: none)")
	scenarios := fs.String("scenarios", "all", "comma-separated scenarios: "+strings.Join(AllScenarios(), ", ")+" (or all)")
	quick := fs.Bool("quick", false, "tiny sizes (50 users, 2,000 tasks, 4 clients, 1s, one PostGraphile round) unless given explicitly")
	fs.IntVar(&c.BenchUsers, "bench-users", c.BenchUsers, "users that sign in and drive the load")
	fs.IntVar(&c.DeepOffset, "deep-offset", c.DeepOffset, "rows before the deep page's cursor")
	var maxConns int
	fs.IntVar(&maxConns, "db-max-conns", int(c.DBMaxConns), "pool size of the server and of the ceiling (DB_MAX_CONNS)")
	fs.BoolVar(&c.Gzip, "gzip", c.Gzip, "clients accept gzip (the server compresses answers over 1 KiB)")
	fs.BoolVar(&c.Peer, "peer", c.Peer, "compare with PostGraphile (installed with npm on first use)")
	fs.IntVar(&c.PeerRounds, "peer-rounds", c.PeerRounds, "adjacent PostGraphile/Taskgraph pairs per scenario and mode")
	fs.StringVar(&c.PeerDir, "peer-dir", c.PeerDir, "where PostGraphile is installed (empty: the user's cache directory)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "stop with an error if the whole run takes longer (0: no overall limit)")
	fs.StringVar(&c.ProfileDir, "profile-dir", c.ProfileDir, "where CPU profiles go when a target is missed (empty: no profile)")
	fs.StringVar(&c.ProfileScenario, "profile-scenario", c.ProfileScenario, "the scenario profiled when a target is missed: page, task, deep or mix")
	fs.Func("server-env", "extra server setting KEY=VALUE, after the benchmark's own (repeatable; shown in the report)", func(kv string) error {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", kv)
		}
		c.ServerEnv = append(c.ServerEnv, kv)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	c.DBMaxConns = int32(maxConns)
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := QuickConfig()
		for name, apply := range map[string]func(){
			"users":       func() { c.Users = q.Users },
			"tasks":       func() { c.Tasks = q.Tasks },
			"concurrency": func() { c.Concurrency = q.Concurrency },
			"duration":    func() { c.Duration = q.Duration },
			"warmup":      func() { c.Warmup = q.Warmup },
			"deep-offset": func() { c.DeepOffset = q.DeepOffset },
			"peer-rounds": func() { c.PeerRounds = q.PeerRounds },
		} {
			if !set[name] {
				apply()
			}
		}
		c.StmtSamples = q.StmtSamples
	}
	if *scenarios != "all" {
		c.Scenarios = nil
		for s := range strings.SplitSeq(*scenarios, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Scenarios = append(c.Scenarios, s)
			}
		}
	}
	c.Command = "taskgraph bench"
	if len(args) > 0 {
		c.Command += " " + strings.Join(args, " ")
	}
	return c, c.Validate()
}

// Main runs `taskgraph bench` with its arguments.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Log = stderr
	if os.Getenv("MAKELEVEL") != "" { // started by `make bench`
		cfg.Command = "make bench  # " + cfg.Command
	}
	report, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	report.WriteText(stdout)
	if cfg.Out != "" {
		fmt.Fprintf(stdout, "\nReport written to %s\n", cfg.Out)
	}
	return nil
}
