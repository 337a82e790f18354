package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one scenario in one mode.
type Result struct {
	Scenario      string
	ScenarioTitle string
	Mode          string // "sql" (the ceiling), "uncached" or "cached"
	ModeTitle     string

	Requests   int64
	Errors     int64
	FirstError string
	Elapsed    time.Duration
	RPS        float64
	P50        time.Duration
	P95        time.Duration
	P99        time.Duration
	Max        time.Duration

	MachineCPU          float64       // share of the machine's cores busy during the run; -1: unknown
	OthersCPU           float64       // of which, work that is not the benchmark's; -1: unknown
	ServerCPUPerRequest time.Duration // the server process's CPU time per request; 0: not a server run
	DBCPUPerRequest     time.Duration // the bench database's PostgreSQL backends' CPU time per request; 0: not measured

	StatementsPerRequest float64
	CacheHitRatio        float64 // from Redis's counters during the run; -1: no cache
	AppCacheHitRatio     float64 // from the cache's own counters in the statement pass; -1: no cache
	PeakRSS              int64   // server's peak resident set during the run, bytes; 0: not a server run
	PeakRSSSinceStart    bool    // the peak could not be reset, so it covers the process's whole life

	SQL []string // the distinct statements sent for this scenario (whitespace collapsed, sorted)

	// Kinds splits the latencies by kind of request, in the order the kinds are declared; only for
	// scenarios that sent more than one kind (the mix), empty otherwise.
	Kinds []KindResult
}

// KindResult is the latency of one kind of request within a Result.
type KindResult struct {
	Kind     string // as the schema names it: "first page", "deep page", "task by id", "updateTask"
	Requests int64  // measured requests of this kind
	P50      time.Duration
	P95      time.Duration
	P99      time.Duration
}

// Share is the kind's share of the result's requests (0..1).
func (k KindResult) Share(of Result) float64 {
	if of.Requests == 0 {
		return 0
	}
	return float64(k.Requests) / float64(of.Requests)
}

func newResult(sc scenario, m mode, r loadResult) Result {
	out := Result{
		Scenario: sc.name, ScenarioTitle: sc.title, Mode: string(m), ModeTitle: m.title(),
		Requests: r.requests, Errors: r.errors, FirstError: r.firstErr, Elapsed: r.elapsed, RPS: r.rps(),
		P50: r.percentile(50), P95: r.percentile(95), P99: r.percentile(99), Max: r.percentile(100),
		CacheHitRatio: -1, AppCacheHitRatio: -1, MachineCPU: -1, OthersCPU: -1,
	}
	out.Kinds = kindResults(r.byKind)
	return out
}

// kindResults summarizes latencies split by kind, in the kinds' declared order; nil when fewer than
// two kinds were sent (the scenario's own line already says everything).
func kindResults(byKind map[stepKind][]time.Duration) []KindResult {
	if len(byKind) < 2 {
		return nil
	}
	var out []KindResult
	for _, k := range slices.Sorted(maps.Keys(byKind)) {
		l := byKind[k]
		out = append(out, KindResult{Kind: k.String(), Requests: int64(len(l)),
			P50: percentile(l, 50), P95: percentile(l, 95), P99: percentile(l, 99)})
	}
	return out
}

// Target is one of the goals, judged on this run.
type Target struct {
	Goal     string
	Measured string
	Met      bool
	Judged   bool   // false when the run did not include what the goal needs
	Mode     string // the server mode the goal is about ("" for all)
	Peer     bool   // judged on the comparison with PostGraphile
}

// Profile is a CPU profile taken because a target was missed.
type Profile struct {
	Mode     string
	Scenario string
	Peer     bool // served the comparison's documents (the fields both servers are asked for)
	Title    string
	Path     string
	Summary  string // `go tool pprof -top` output, or how to read the file
	Result   Result // the load run while profiling

	MachineCPU float64 // share of the machine's cores busy while profiling
	OthersCPU  float64 // of which, work that is not the benchmark's
	ProcessCPU float64 // cores the benchmark process (server and load generator) kept busy
	// RedisLookups is the cache's MGETs per request while profiling a setup with Redis (-1: none):
	// near zero when the near cache answers, as it does in the measured server.
	RedisLookups float64
}

// Report is a whole run.
type Report struct {
	Config   Config
	Machine  Machine
	Started  time.Time
	Took     time.Duration
	Reseeded bool
	Results  []Result
	Targets  []Target
	Profiles []Profile
	Peer     *PeerReport // the comparison with PostGraphile; nil when not run
}

// Result returns the result of a scenario in a mode.
func (r *Report) Result(scenario string, m mode) (Result, bool) {
	for _, x := range r.Results {
		if x.Scenario == scenario && x.Mode == string(m) {
			return x, true
		}
	}
	return Result{}, false
}

// SQLDrift lists, per scenario, the statements the ceiling and the uncached server do not share: the
// ceiling copies the stores' SQL, and this is how a change in the stores shows up. Empty when they
// send exactly the same statements.
func (r *Report) SQLDrift() map[string][]string {
	out := map[string][]string{}
	for _, sql := range r.Results {
		if sql.Mode != string(modeCeiling) {
			continue
		}
		srv, ok := r.Result(sql.Scenario, modeUncached)
		if !ok {
			continue
		}
		for _, s := range sql.SQL {
			if !slices.Contains(srv.SQL, s) {
				out[sql.Scenario] = append(out[sql.Scenario], "only the ceiling: "+s)
			}
		}
		for _, s := range srv.SQL {
			if !slices.Contains(sql.SQL, s) {
				out[sql.Scenario] = append(out[sql.Scenario], "only the server: "+s)
			}
		}
	}
	return out
}

// evaluate judges the targets.
func (r *Report) evaluate() {
	r.Targets = nil
	sql, okSQL := r.Result(ScenarioPage, modeCeiling)
	for _, t := range []struct {
		m      mode
		factor float64
		goal   string
	}{
		{modeUncached, 0.7, "cache off: GraphQL page throughput ≥ 70% of the direct-SQL ceiling"},
		{modeCached, 2, "Redis cache: GraphQL page throughput ≥ 2× the direct-SQL ceiling"},
	} {
		g, ok := r.Result(ScenarioPage, t.m)
		target := Target{Goal: t.goal, Mode: string(t.m), Judged: ok && okSQL}
		if target.Judged {
			ratio := g.RPS / sql.RPS
			target.Met = ratio >= t.factor
			target.Measured = fmt.Sprintf("%.0f vs %.0f req/s = %.2f×", g.RPS, sql.RPS, ratio)
		}
		r.Targets = append(r.Targets, target)
	}
	for _, m := range serverModes() {
		first, ok1 := r.Result(ScenarioPage, m)
		deep, ok2 := r.Result(ScenarioDeep, m)
		target := Target{Goal: fmt.Sprintf("%s: deep page median ≤ 1.2× the first page's", modeShort(m)), Mode: string(m), Judged: ok1 && ok2}
		if target.Judged {
			ratio := float64(deep.P50) / float64(first.P50)
			target.Met = ratio <= 1.2
			target.Measured = fmt.Sprintf("%s vs %s = %.2f×", ms(deep.P50), ms(first.P50), ratio)
		}
		r.Targets = append(r.Targets, target)
	}
	for _, m := range serverModes() {
		target := Target{Goal: fmt.Sprintf("%s: p99 < 25 ms at %d clients, every scenario", modeShort(m), r.Config.Concurrency), Mode: string(m)}
		var worst Result
		for _, x := range r.Results {
			if x.Mode == string(m) && (!target.Judged || x.P99 > worst.P99) {
				worst, target.Judged = x, true
			}
		}
		if target.Judged {
			target.Met = worst.P99 < 25*time.Millisecond
			target.Measured = fmt.Sprintf("worst %s (%s)", ms(worst.P99), worst.Scenario)
			// The same scenario's SQL alone, at the same concurrency, tells a target the server can
			// approach from one that the machine cannot meet even without the server.
			if sql, ok := r.Result(worst.Scenario, modeCeiling); ok {
				target.Measured += fmt.Sprintf("; its direct SQL alone: %s", ms(sql.P99))
			}
		}
		r.Targets = append(r.Targets, target)
	}
	if r.Peer != nil {
		r.Targets = append(r.Targets, r.Peer.targets(r.Config.Concurrency)...)
	}
	var errs, requests, peak int64
	var peakAt string
	all := slices.Clone(r.Results)
	if r.Peer != nil {
		for _, run := range r.Peer.Runs {
			all = append(all, run.Result)
		}
	}
	for _, x := range all {
		errs += x.Errors
		requests += x.Requests
		if x.PeakRSS > peak && x.Mode != string(modePostGraphile) {
			peak, peakAt = x.PeakRSS, x.Scenario+", "+x.Mode
		}
	}
	r.Targets = append(r.Targets,
		Target{Goal: "zero errors", Judged: len(r.Results) > 0, Met: errs == 0,
			Measured: fmt.Sprintf("%d errors in %d requests", errs, requests)},
		Target{Goal: "server peak RSS < 150 MB", Judged: peak > 0, Met: peak < 150<<20,
			Measured: fmt.Sprintf("%.0f MB (%s)", mb(peak), peakAt)},
	)
}

func modeShort(m mode) string {
	switch m {
	case modeCached:
		return "Redis cache"
	case modeDefault:
		return "default"
	case modePostGraphile:
		return "PostGraphile"
	}
	return "cache off"
}

// missedAgainstPeer reports whether mode m missed a target of the comparison with PostGraphile: its
// profile must then show the comparison's documents, not the scenario's own.
func (r *Report) missedAgainstPeer(m mode) bool {
	return slices.ContainsFunc(r.Targets, func(t Target) bool { return t.Peer && t.Judged && !t.Met && t.Mode == string(m) })
}

// modesMissing lists the server modes with a missed target (goals about every mode count for each).
func (r *Report) modesMissing() []mode {
	var out []mode
	for _, m := range serverModes() {
		for _, t := range r.Targets {
			if t.Judged && !t.Met && (t.Mode == string(m) || t.Mode == "") {
				if !slices.Contains(out, m) {
					out = append(out, m)
				}
			}
		}
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func msNum(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func ratio(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// tableRows is the results table, shared by the Markdown and the text output.
func (r *Report) tableRows() (header []string, rows [][]string) {
	header = []string{"scenario", "mode", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
		"SQL/req", "cache hits", "peak RSS MB", "CPU busy", "others' CPU", "server CPU ms/req", "vs SQL"}
	for _, x := range r.Results {
		vs := "–"
		if sql, ok := r.Result(x.Scenario, modeCeiling); ok && sql.RPS > 0 {
			vs = fmt.Sprintf("%.2f×", x.RPS/sql.RPS)
		}
		rss := "–"
		if x.PeakRSS > 0 {
			rss = fmt.Sprintf("%.0f", mb(x.PeakRSS))
			if x.PeakRSSSinceStart {
				rss += "*"
			}
		}
		serverCPU := "–"
		if x.ServerCPUPerRequest > 0 {
			serverCPU = fmt.Sprintf("%.3f", float64(x.ServerCPUPerRequest)/float64(time.Millisecond))
		}
		rows = append(rows, []string{x.Scenario, x.ModeTitle, fmt.Sprint(x.Requests), fmt.Sprintf("%.0f", x.RPS),
			msNum(x.P50), msNum(x.P95), msNum(x.P99), fmt.Sprint(x.Errors), fmt.Sprintf("%.2f", x.StatementsPerRequest),
			ratio(x.CacheHitRatio), rss, ratio(x.MachineCPU), ratio(x.OthersCPU), serverCPU, vs})
	}
	return header, rows
}

// kindRows is the "latency by request kind" table, shared by the Markdown and the text output: one
// row per kind of every result that sent more than one kind. No rows when there is none.
func (r *Report) kindRows() (header []string, rows [][]string) {
	header = []string{"scenario", "mode", "kind", "requests", "share", "p50 ms", "p95 ms", "p99 ms"}
	for _, x := range r.Results {
		for _, k := range x.Kinds {
			rows = append(rows, []string{x.Scenario, x.ModeTitle, k.Kind, fmt.Sprint(k.Requests),
				fmt.Sprintf("%.1f%%", 100*k.Share(x)), msNum(k.P50), msNum(k.P95), msNum(k.P99)})
		}
	}
	return header, rows
}

// WriteText prints the results and targets as aligned text.
func (r *Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header, rows := r.tableRows()
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w)
	if header, rows := r.kindRows(); len(rows) > 0 {
		fmt.Fprintln(w, "Latency by request kind:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if r.Peer != nil {
		r.Peer.writeText(w)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tresult")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Goal, t.Measured, verdict(t))
	}
	tw.Flush()
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "first error, %s / %s: %s\n", x.Scenario, x.ModeTitle, x.FirstError)
		}
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nCPU profile of the %s scenario, %s: %s\n", p.Scenario, p.Title, p.Path)
	}
}

func verdict(t Target) string {
	switch {
	case !t.Judged:
		return "not measured"
	case t.Met:
		return "met"
	}
	return "MISSED"
}

// Markdown renders docs/benchmarks.md.
func (r *Report) Markdown() string {
	c := r.Config
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p("# Benchmarks")
	p("")
	p("Generated by `taskgraph bench` (`make bench`); rerunning it overwrites this file. What it measures and why is")
	p("described under [Method](#method) below.")
	p("")
	p("## Machine and run")
	p("")
	p("| | |")
	p("|---|---|")
	p("| date | %s |", r.Started.Format("2006-01-02 15:04 MST"))
	p("| command | `%s` |", c.Command)
	p("| CPU | %d × %s |", r.Machine.CPUs, r.Machine.CPUModel)
	p("| memory | %s |", r.Machine.Memory)
	p("| kernel | %s |", r.Machine.Kernel)
	p("| Go | %s |", r.Machine.GoVersion)
	p("| PostgreSQL | %s |", r.Machine.Postgres)
	p("| Redis | %s |", r.Machine.Redis)
	p("| code | %s |", r.Machine.Code)
	p("| load average before / after | %s / %s |", r.Machine.LoadBefore, r.Machine.LoadAfter)
	p("| data | %s users, %s tasks (%d bench users with %s tasks each; the rest skewed over the other users)%s |",
		thousands(c.Users), thousands(c.Tasks), c.benchUsers(), thousands(c.TasksPerBenchUser()), seededNote(r.Reseeded))
	p("| load | %d concurrent clients on the same machine, %s warmup + %s measured per scenario and mode |",
		c.Concurrency, c.Warmup, c.Duration)
	extra := ""
	for _, kv := range c.ServerEnv {
		extra += " `" + kv + "`,"
	}
	p("| server | separate process, `APP_ENV=production`, `DB_MAX_CONNS=%d`, `RATE_LIMIT_ENABLED=false`, `LOG_LEVEL=warn`,%s %s |", c.DBMaxConns, extra, gzipNote(c.Gzip))
	p("| whole run | %s |", r.Took.Round(time.Second))
	p("")
	if r.Peer != nil {
		r.Peer.writeMarkdown(&b, c)
	}
	p("## Results")
	p("")
	header, rows := r.tableRows()
	p("| %s |", strings.Join(header, " | "))
	p("|%s", strings.Repeat("---|", len(header)))
	for _, row := range rows {
		p("| %s |", strings.Join(row, " | "))
	}
	p("")
	p("Scenarios:")
	p("")
	for _, name := range c.Scenarios {
		sc := scenarioByName(name, c.DeepOffset)
		p("- **%s**: %s.", sc.name, sc.title)
	}
	p("")
	p("Columns: *req/s* counts requests started in the measured window over the time until the last of them")
	p("ended; latencies are the client's, from sending the request to reading the whole answer (nearest-rank")
	p("percentiles of every request, no histogram); *errors* are transport failures, non-200 answers and")
	p("answers carrying GraphQL `errors`; *SQL/req* is statements sent to PostgreSQL per request (batched ones")
	p("counted one by one); *cache hits* is the share of cache lookups Redis answered, from Redis's own")
	p("`keyspace_hits`/`keyspace_misses` during the run; *peak RSS* is the server process's `VmHWM` during")
	p("the scenario; *CPU busy* is the share of all %d cores busy during the run (`/proc/stat`: server,", r.Machine.CPUs)
	p("PostgreSQL, Redis, load generator and anything else running); *others' CPU* is the part of that spent")
	p("by processes that are not the benchmark's (not this process, the server, Redis, PostgreSQL's own")
	p("processes or its backends for the benchmark database: other people's builds and tests on a shared")
	p("machine), which takes cores from everything measured; *server CPU ms/req* is the server")
	p("process's user+system time per request (`/proc/<pid>/stat`); *vs SQL* is throughput relative to the")
	p("same scenario's direct-SQL ceiling.")
	if appHits := r.appHitNote(); appHits != "" {
		p("The cache's own hit ratio (its counters, in the statement pass: in-process, one request at a time): %s.", appHits)
	}
	p("")
	if header, rows := r.kindRows(); len(rows) > 0 {
		p("## Latency by request kind")
		p("")
		p("The scenarios that mix kinds of request, split by kind: which kind makes the tail. *share* is the")
		p("kind's part of the scenario's measured requests; percentiles are nearest-rank, as above, over that")
		p("kind's requests only.")
		p("")
		p("| %s |", strings.Join(header, " | "))
		p("|%s", strings.Repeat("---|", len(header)))
		for _, row := range rows {
			p("| %s |", strings.Join(row, " | "))
		}
		p("")
	}
	p("## Targets")
	p("")
	p("| target | measured | result |")
	p("|---|---|---|")
	for _, t := range r.Targets {
		v := verdict(t)
		if v == "MISSED" {
			v = "**missed**"
		}
		p("| %s | %s | %s |", t.Goal, t.Measured, v)
	}
	p("")
	for _, x := range r.Results {
		if x.FirstError != "" {
			p("First error in %s / %s: `%s`", x.Scenario, x.ModeTitle, strings.ReplaceAll(x.FirstError, "`", "'"))
			p("")
		}
	}
	r.writeMethod(&b)
	r.writeClosingNote(&b)
	return b.String()
}

func (r *Report) appHitNote() string {
	var parts []string
	for _, x := range r.Results {
		if x.AppCacheHitRatio >= 0 {
			parts = append(parts, fmt.Sprintf("%s %s", x.Scenario, ratio(x.AppCacheHitRatio)))
		}
	}
	return strings.Join(parts, ", ")
}

func seededNote(reseeded bool) string {
	if reseeded {
		return "; seeded in this run"
	}
	return "; seed reused from an earlier run"
}

func gzipNote(gzip bool) string {
	if gzip {
		return "clients accept gzip"
	}
	return "clients do not ask for gzip (loopback)"
}

func (r *Report) writeMethod(b *strings.Builder) {
	c := r.Config
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("## Method")
	p("")
	p("- **Data.** `%s` is created and migrated like the server's own database, then filled with SQL", dbName(c.DatabaseURL))
	p("  (`generate_series`, secondary indexes dropped and rebuilt in the same transaction) and vacuumed and")
	p("  analyzed. It is reseeded only when its row counts or shape differ, so reruns start in seconds. Every")
	p("  user shares one real argon2id password hash.")
	p("- **Clients.** Each of the %d bench users signs in through the real `login` mutation; client *i* acts", c.benchUsers())
	p("  as bench user *i* mod %d. Each bench user owns %s tasks, so the deep page (the 20 rows after a cursor", c.benchUsers(), thousands(c.TasksPerBenchUser()))
	p("  %s rows in, newest first) exists for every client; the cursor is the one the API itself returns after", thousands(c.DeepOffset))
	p("  paging that far. Clients send requests back to back over keep-alive HTTP/1.1 connections, each")
	p("  written whole and its answer read on the client's own goroutine (as wrk does; net/http's client cost")
	p("  about 40%% of the server's CPU per request, on the cores the server shares with it).")
	p("- **Server.** The real binary (`taskgraph serve`) in its own process on a free 127.0.0.1 port, in three")
	p("  settings: *default* as a new user starts it (`CACHE_ENABLED=true`, no Redis: the in-process cache), *cache")
	p("  off* (`CACHE_ENABLED=false`, no Redis, so no response cache either) and *Redis cache* (`CACHE_ENABLED=true`")
	p("  and `REDIS_URL`; the Redis database flushed first, so the warmup fills the cache). Each is stopped with")
	p("  SIGTERM after its scenarios.")
	p("  With the Redis cache, the page and deep-page documents read only the client's own data, so their repeats")
	p("  are answered whole from the response cache (`RESPONSE_CACHE_TTL`, version tokens per dependency)")
	p("  until that user writes; in the mix every `updateTask` retires its user's stored answers. The task")
	p("  scenario (`task(id)`) is not eligible and runs through the row cache.")
	p("- **Ceiling.** The statements the server without a cache runs for each request (copied from the stores:")
	p("  session lookup; page query with `LIMIT 21` and its owners joined and, after a cursor, the keyset")
	p("  condition plus the batched `EXISTS`; task counts by owner; task by id with its owner joined; the")
	p("  `UPDATE … RETURNING`), one after another on a pgx pool of")
	p("  the server's size, at the same concurrency and for the same time, rows scanned into the same structs.")
	p("  The mix makes the same random choices in both.")
	p("- **Statements per request.** The server process is not instrumented; instead the same handler is built")
	p("  in-process (`server.Build`) on a pool whose pgx tracer counts statements, and %d requests of each", c.StmtSamples)
	p("  scenario are sent one at a time right after the scenario's load (so a cache holds what the load put")
	p("  there), after a few uncounted ones. The ceiling's count comes from the same kind of tracer during its")
	p("  run.")
	p("- **Cache hits.** Redis's server-wide counters, before and after each cached scenario. Every cache lookup")
	p("  is one `MGET` that also reads the cache's epoch key, so one key per `MGET` is taken out of the count.")
	if drift := r.SQLDrift(); len(drift) == 0 {
		p("  Check: in every scenario the ceiling sent exactly the statements the uncached server sent (same text).")
	} else {
		p("  **Check failed**: the ceiling's SQL differs from the server's (update internal/bench/ceiling.go):")
		for _, name := range slices.Sorted(maps.Keys(drift)) {
			for _, d := range drift[name] {
				p("  - %s, %s", name, strings.ReplaceAll(d, "|", "\\|"))
			}
		}
	}
	p("- **Memory.** `VmHWM` from `/proc/<pid>/status`, reset before each scenario through `/proc/<pid>/clear_refs`")
	p("  (an asterisk marks a peak since the process started, where the reset was refused).")
	p("")
}

func (r *Report) writeClosingNote(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("## Closing note")
	p("")
	var missed []string
	for _, t := range r.Targets {
		if t.Judged && !t.Met {
			missed = append(missed, fmt.Sprintf("%s (%s)", t.Goal, t.Measured))
		}
	}
	if len(missed) == 0 {
		p("Every target was met in this run.")
		return
	}
	p("Missed: %s.", strings.Join(missed, "; "))
	p("")
	if len(r.Profiles) == 0 {
		p("No profile was taken (`-profile-dir` was empty).")
		return
	}
	p("Where the time goes: a CPU profile of the %s scenario, taken with `runtime/pprof` while the same", r.Config.ProfileScenario)
	p("handler (`server.Build`, with metrics, wired as `taskgraph serve` wires it) served it in the benchmark's")
	p("own process at the same concurrency. The load generator shares that process, as it shares the machine")
	p("in the measured runs; profiler labels tell its goroutines from the server's (unlabelled samples are the")
	p("runtime's own, mostly garbage collection). The kinds of work sum the server side's flat time.")
	for _, pr := range r.Profiles {
		p("")
		p("### %s", pr.Title)
		p("")
		if pr.Peer {
			p("Served the comparison's documents (the fields both servers are asked for), as a target against PostGraphile was missed in this setup.")
			p("")
		}
		p("During the profile: %.0f req/s, p50 %s, p99 %s; the machine's CPUs were %s busy (%s of it other", pr.Result.RPS, ms(pr.Result.P50), ms(pr.Result.P99), ratio(pr.MachineCPU), ratio(pr.OthersCPU))
		p("people's work), this process (server and load generator) used %.2f cores. Profile: `%s`.", pr.ProcessCPU, pr.Path)
		if pr.RedisLookups >= 0 {
			p("Redis cache lookups (MGET) per request: %.3f.", pr.RedisLookups)
		}
		p("")
		p("```")
		p("%s", strings.TrimSpace(pr.Summary))
		p("```")
	}
}

func dbName(url string) string {
	name := url
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.Index(name, "?"); i >= 0 {
		name = name[:i]
	}
	return name
}

// thousands formats n with commas: 1000000 → 1,000,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
