package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/server"
)

// profileScenario serves c.ProfileScenario from an in-process server (the real handler from
// server.Build behind a real listener on 127.0.0.1) under load and records a CPU profile of the
// whole process into path. The separate server process has no pprof endpoint, and adding one is not
// the benchmark's to do.
func profileScenario(ctx context.Context, c Config, m mode, users []*benchUser, body requestBody, rdb *redis.Client, path string) (Profile, error) {
	prof := Profile{Mode: string(m), Scenario: c.ProfileScenario, Title: m.title(), Path: path, RedisLookups: -1}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return prof, fmt.Errorf("profile directory: %w", err)
	}
	// Wired as `taskgraph serve` wires it, metrics included (they cost CPU on every request and
	// statement), so the profile shows what the measured server process does.
	reg := prometheus.NewRegistry()
	metrics, err := observe.New(reg)
	if err != nil {
		return prof, fmt.Errorf("metrics: %w", err)
	}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: c.DBMaxConns, Tracer: metrics.PGXTracer()})
	if err != nil {
		return prof, err
	}
	defer pool.Close()
	app, err := buildApp(c, m, pool, server.Observability{Metrics: metrics, Gatherer: reg})
	if err != nil {
		return prof, err
	}
	defer app.Close()
	// Housekeeping runs as `taskgraph serve` runs it: without it the Redis setup's near cache never
	// gets its lease, and every lookup would go to Redis.
	background, stopBackground := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go pprof.Do(background, pprof.Labels("side", "server"), func(ctx context.Context) {
		defer close(stopped)
		app.Background(ctx)
	})
	defer func() {
		stopBackground()
		<-stopped
	}()
	if m.redis() {
		if err := waitNearServing(ctx, app); err != nil {
			return prof, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return prof, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: app.Handler, ReadHeaderTimeout: 5 * time.Second}
	// Goroutines inherit profiler labels from the one that starts them, so every sample of a server
	// connection, resolver or dataloader is labelled side=server, and every sample of a client or
	// its connections side=load generator.
	go pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) { _ = srv.Serve(ln) })
	defer srv.Close()

	lc, err := newLoadClient("http://"+ln.Addr().String()+"/graphql", c.Concurrency, c.Gzip)
	if err != nil {
		return prof, err
	}
	defer lc.close()
	sc := scenarioByName(c.ProfileScenario, c.DeepOffset)
	op := httpOperation(lc, users, sc, c.Concurrency, body, true)
	if err := probe(ctx, op); err != nil {
		return prof, err
	}
	f, err := os.Create(path)
	if err != nil {
		return prof, fmt.Errorf("create profile: %w", err)
	}
	defer f.Close()
	var (
		res      loadResult
		before   cpuSample
		errStart error
	)
	pprof.Do(ctx, pprof.Labels("side", "load generator"), func(ctx context.Context) {
		// Warm up outside the profile (connections, caches), then profile the measured part.
		runLoad(ctx, c.Concurrency, 0, c.Warmup, op)
		if errStart = pprof.StartCPUProfile(f); errStart != nil {
			return
		}
		before, _ = sampleCPU(os.Getpid(), dbName(c.DatabaseURL))
		countRedis := m.redis() && rdb != nil
		var redisBefore redisCounters
		if countRedis {
			redisBefore, err = readRedisCounters(ctx, rdb)
			countRedis = err == nil
		}
		res = runLoad(ctx, c.Concurrency, 0, c.Duration, op)
		pprof.StopCPUProfile()
		if countRedis && res.requests > 0 {
			if redisAfter, err := readRedisCounters(ctx, rdb); err == nil {
				prof.RedisLookups = float64(redisAfter.mgets-redisBefore.mgets) / float64(res.requests)
			}
		}
	})
	if errStart != nil {
		return prof, fmt.Errorf("start CPU profile: %w", errStart)
	}
	if after, err := sampleCPU(os.Getpid(), dbName(c.DatabaseURL)); err == nil {
		prof.MachineCPU, prof.OthersCPU = machineBusy(before, after), othersBusy(before, after)
		prof.ProcessCPU = float64(procCPU(before, after)) / float64(after.at.Sub(before.at))
	}
	if err := f.Close(); err != nil {
		return prof, fmt.Errorf("write profile: %w", err)
	}
	prof.Result = newResult(sc, m, res)
	prof.Summary = summarizeProfile(ctx, path)
	return prof, nil
}

// waitNearServing waits (a few seconds at most) until the near cache in front of Redis holds its
// lease, as it does in a server that has been up a moment; a server without one returns at once.
func waitNearServing(ctx context.Context, app *server.App) error {
	if app.Cache == nil || !app.Cache.HasNear() {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for !app.Cache.NearServing() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the near cache got no lease within 5s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // polling a flag the lease protocol sets
		}
	}
	return nil
}

// summarizeProfile renders the profile with `go tool pprof`, or says how to when Go is not installed.
// The views: how the samples split between server and load generator (unlabelled samples are the
// runtime's own goroutines, mostly the garbage collector's background workers), and where the
// server's goroutines spend their CPU time, cumulative and flat.
func summarizeProfile(ctx context.Context, path string) string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Sprintf("(go is not on PATH; read the profile with: go tool pprof -top %s)", path)
	}
	const serverSide = "-tagfocus=side=server"
	views := []struct {
		title string
		args  []string
	}{
		{"Samples by side:", []string{"-tags"}},
		{"Server side, cumulative, top 40:", []string{"-top", "-cum", "-nodecount=40", serverSide}},
		{"Server side, flat, top 25:", []string{"-top", "-nodecount=25", serverSide}},
	}
	var b strings.Builder
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(cctx, goBin, "tool", "pprof", "-top", "-nodecount=1000000", serverSide, path).Output(); err == nil {
		fmt.Fprintf(&b, "Server side, flat time by kind of work:\n%s\n", breakdown(string(out)))
	}
	for _, v := range views {
		args := append([]string{"tool", "pprof"}, v.args...)
		args = append(args, path)
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(cctx, goBin, args...).Output()
		cancel()
		if err != nil {
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				out = append(out, exitErr.Stderr...)
			}
			fmt.Fprintf(&b, "%s\n(go tool pprof failed: %v)\n%s\n\n", v.title, err, out)
			continue
		}
		fmt.Fprintf(&b, "%s\n%s\n\n", v.title, trimPprofHeader(string(out)))
	}
	return b.String()
}

// trimPprofHeader drops pprof's "File:", "Type:" and "Time:" lines, which repeat for every view.
func trimPprofHeader(out string) string {
	var keep []string
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(line, "File: ") || strings.HasPrefix(line, "Type: ") || strings.HasPrefix(line, "Time: ") ||
			strings.HasPrefix(line, "Build ID: ") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// workKinds classify functions by what their time is spent on, first match wins.
func workKinds() []struct {
	kind string
	re   *regexp.Regexp
} {
	kinds := []struct{ kind, re string }{
		{"memory allocation", `^runtime\.(mallocgc|newobject|makeslice|growslice|makemap|nextFreeFast|memclrNoHeapPointers|heapSet|` +
			`getMCache|makeSpanClass|spanClass|extractHeapBits|deductAssistCredit|roundupsize|rawstring|rawbyteslice|` +
			`concatstring|slicebytetostring|stringtoslicebyte|\(\*mspan\)|\(\*mcache\)|\(\*mcentral\)|\(\*mheap\)|\(\*spanSet\))`},
		{"garbage collection", `^runtime\.(gc|scan|greyobject|markBits|findObject|wbBuf|bulkBarrier|typePointers|tryDefer|` +
			`spanOf|markroot|wbMove|\(\*gcWork\)|\(\*gcBits\)|\(\*mspan\)\.(init|typePointers)|\(\*spanInlineMarkBits\))|^internal/runtime/gc/`},
		{"goroutine stacks (creation, growth)", `^runtime\.(pcvalue|step|funcdata|findfunc|newstack|copystack|adjust|` +
			`\(\*unwinder\)|\(\*stkframe\)|stackpool|stackalloc|stackfree|stackcache|readvarint|morestack|getStackMap|` +
			`gentraceback|newproc|gfget|gfput|malg|funcInfo|funcspdelta|pcdatavalue|gostartcall)`},
		{"network system calls", `[Ss]yscall|^internal/poll\.|^net\.`},
		{"other runtime (scheduling, channels, maps, locks)", `^runtime\.|^internal/runtime/`},
		{"gqlgen executor", `99designs/gqlgen|vektah/gqlparser`},
		{"generated resolvers (graph/)", `taskgraph/taskgraph/graph\.`},
		{"pgx", `jackc/`},
		{"JSON and number formatting", `^encoding/json|^strconv|^unicode`},
		{"crypto (cursor HMAC, JWT)", `^crypto/|golang-jwt`},
		{"Redis client", `redis/go-redis`},
		{"dataloader", `graph-gophers/dataloader`},
		{"net/http", `^net/http|^bufio|^net/textproto|klauspost/compress|rs/cors`},
		{"Taskgraph's own code", `taskgraph/taskgraph/`},
	}
	out := make([]struct {
		kind string
		re   *regexp.Regexp
	}, len(kinds))
	for i, k := range kinds {
		out[i].kind, out[i].re = k.kind, regexp.MustCompile(k.re)
	}
	return out
}

// breakdown sums the flat time of a `go tool pprof -top` listing by kind of work.
func breakdown(top string) string {
	// One row of `go tool pprof -top`: flat time first, function name last.
	pprofTopLine := regexp.MustCompile(`^\s*([0-9.]+)(ns|us|µs|ms|s|m|h)\s+[0-9.]+%\s+[0-9.]+%\s+[0-9.]+(?:ns|us|µs|ms|s|m|h)\s+[0-9.]+%\s+(.+)$`)
	kinds := workKinds()
	sums := map[string]time.Duration{}
	var total time.Duration
	for line := range strings.SplitSeq(top, "\n") {
		m := pprofTopLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		d, err := time.ParseDuration(m[1] + strings.Replace(m[2], "µs", "us", 1))
		if err != nil {
			continue
		}
		kind := "other"
		for _, k := range kinds {
			if k.re.MatchString(m[3]) {
				kind = k.kind
				break
			}
		}
		sums[kind] += d
		total += d
	}
	if total == 0 {
		return "(no samples)"
	}
	names := slices.SortedFunc(maps.Keys(sums), func(a, b string) int { return cmp.Compare(sums[b], sums[a]) })
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "  %5.1f%%  %7s  %s\n", 100*float64(sums[k])/float64(total), sums[k].Round(10*time.Millisecond), k)
	}
	fmt.Fprintf(&b, "  100.0%%  %7s  total", total.Round(10*time.Millisecond))
	return b.String()
}
