package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// PeerRun is one measured run of the comparison with PostGraphile.
type PeerRun struct {
	Round   int    // 0-based
	Pair    string // the Taskgraph mode of the pair this run belongs to (set on both runs of a pair)
	Control bool   // run against the second default server of the Redis comparison
	Result
}

// PeerReport is the comparison with PostGraphile: every run, in the order they ran.
type PeerReport struct {
	PostGraphile string // version
	Node         string // `node --version`
	Dir          string // where it is installed
	Rounds       int
	Runs         []PeerRun
	Checked      string // what the equivalence check compared
}

// peerModes are the Taskgraph modes compared with PostGraphile, in the order.
func peerModes() []mode { return []mode{modeDefault, modeCached, modeUncached} }

// preparePeer installs PostGraphile where c says (before the long parts of the run, so a missing npm
// fails it at once).
func preparePeer(ctx context.Context, c Config, logf func(string, ...any)) (peerInstall, error) {
	dir := c.PeerDir
	if dir == "" {
		var err error
		if dir, err = defaultPeerDir(); err != nil {
			return peerInstall{}, err
		}
	}
	return installPeer(ctx, dir, logf)
}

// peerTarget is one server in the comparison.
type peerTarget struct {
	mode     mode
	proc     *serverProcess
	body     requestBody
	signedIn bool
	client   *http.Client
	control  bool // the second default server of the Redis comparison
}

// runPeer starts PostGraphile (installed by preparePeer), then for each Taskgraph mode starts that server, checks
// that both answer the same, and measures the comparison's scenarios against both in adjacent pairs,
// several rounds, the order within a pair alternating from round to round.
func runPeer(ctx context.Context, c Config, inst peerInstall, users []*benchUser, rdb *redis.Client, logf func(string, ...any)) (*PeerReport, error) {
	rep := &PeerReport{PostGraphile: inst.version, Node: inst.nodeVersion, Dir: inst.dir, Rounds: c.PeerRounds}
	logf("starting PostGraphile %s (Node.js %s)", inst.version, inst.nodeVersion)
	pgProc, err := startPeer(ctx, c, inst)
	if err != nil {
		return nil, err
	}
	defer func() { _ = pgProc.stop() }()
	pg := peerTarget{mode: modePostGraphile, proc: pgProc, body: pgPeerBody, client: httpClient(c.Concurrency, c.Gzip)}
	defer pg.client.CloseIdleConnections()

	if err := preparePeerUsers(ctx, c, pg.client, pgProc.url+"/graphql", users); err != nil {
		return nil, err
	}
	ref := map[*benchUser]peerAnswers{}
	for _, u := range users {
		a, err := fetchPeerAnswers(ctx, pg.client, pgProc.url+"/graphql", u, true)
		if err != nil {
			return nil, fmt.Errorf("PostGraphile, bench user %d: %w", u.n, err)
		}
		ref[u] = a
	}
	rep.Checked = fmt.Sprintf("for each of the %d bench users, the first page, the deep page and %d of its tasks, from PostGraphile and from each Taskgraph server before it was measured",
		len(users), min(peerCheckTasks, len(users[0].tasks)))

	for _, m := range peerModes() {
		runs, err := runPeerMode(ctx, c, m, pg, users, ref, rdb, logf)
		if err != nil {
			return nil, fmt.Errorf("comparison with PostGraphile, %s: %w", m.title(), err)
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	if err := pgProc.stop(); err != nil {
		return nil, err
	}
	runs, err := runRedisAgainstDefault(ctx, c, users, ref, rdb, logf)
	if err != nil {
		return nil, fmt.Errorf("comparison of the Redis and default setups: %w", err)
	}
	rep.Runs = append(rep.Runs, runs...)
	return rep, nil
}

// pairRedisVsDefault marks the runs of the direct comparison of the Redis and default setups.
const pairRedisVsDefault = "redis-vs-default"

// runRedisAgainstDefault measures the Redis setup against two default servers, all three running, so
// that "Redis ≥ default" is judged side by side rather than across blocks run minutes apart. Each
// round measures a default server, the Redis one, then the other default server (which one comes
// first alternates by round): Redis is compared with both of its neighbours, which cancels a steady
// drift of the machine, and the two default servers, identical, show how far apart this machine
// reads two equal setups in the same round.
func runRedisAgainstDefault(ctx context.Context, c Config, users []*benchUser, ref map[*benchUser]peerAnswers,
	rdb *redis.Client, logf func(string, ...any)) ([]PeerRun, error) {
	if err := flushBenchRedis(ctx, rdb); err != nil {
		return nil, err
	}
	var targets []peerTarget
	for _, m := range []mode{modeDefault, modeCached, modeDefault} {
		t, err := startTaskgraph(ctx, c, m, users, ref)
		if err != nil {
			return nil, err
		}
		defer t.stop()
		targets = append(targets, t)
	}
	first, redisSetup, second := targets[0], targets[1], targets[2]
	second.control = true
	order := func(round int) []peerTarget {
		if round%2 == 1 {
			return []peerTarget{second, redisSetup, first}
		}
		return []peerTarget{first, redisSetup, second}
	}
	return measureRounds(ctx, c, order, users, pairRedisVsDefault, " (Redis against default)", logf)
}

// measurePairs measures each of the comparison's scenarios against a and b back to back (an adjacent
// pair), c.PeerRounds rounds, the order within a pair alternating by round; the runs are labelled
// pair, and note is added to the progress lines.
func measurePairs(ctx context.Context, c Config, a, b peerTarget, users []*benchUser, pair, note string,
	logf func(string, ...any)) ([]PeerRun, error) {
	order := func(round int) []peerTarget {
		if round%2 == 1 {
			return []peerTarget{b, a}
		}
		return []peerTarget{a, b}
	}
	return measureRounds(ctx, c, order, users, pair, note, logf)
}

// measureRounds measures each of the comparison's scenarios against the servers order gives for the
// round, one after the other, c.PeerRounds rounds.
func measureRounds(ctx context.Context, c Config, order func(round int) []peerTarget, users []*benchUser, pair, note string,
	logf func(string, ...any)) ([]PeerRun, error) {
	var out []PeerRun
	for round := range c.PeerRounds {
		for _, name := range peerScenarioNames() {
			sc := peerScenario(name, c.DeepOffset)
			for _, t := range order(round) {
				title := t.mode.title()
				if t.control {
					title += " (second server)"
				}
				logf("%-8s %-36s round %d/%d%s, %d clients, %s + %s", sc.name, title, round+1, c.PeerRounds, note,
					c.Concurrency, c.Warmup, c.Duration)
				r, err := measurePeer(ctx, c, t, users, sc)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", sc.name, title, err)
				}
				out = append(out, PeerRun{Round: round, Pair: pair, Control: t.control, Result: r})
			}
		}
	}
	return out, nil
}

// redisVsDefault is the direct comparison of scenario sc. Per round, Redis is compared with the
// geometric mean of the two default servers around it; the figures are medians over rounds.
// Resolution is how far apart the two default servers read (the median over rounds of
// |ln(second/first)|, as a fraction): two identical setups differ by that much on this machine, so
// Redis reading below the default by less than it is not a measured difference.
type redisVsDefault struct {
	DefaultRPS, RedisRPS float64
	DefaultCPU, RedisCPU time.Duration
	Ratio, CPURatio      float64 // above 1: Redis better
	Resolution           float64
	Rounds               int
}

// AtLeastDefault is the goal "Redis ≥ the default setup": Redis's median ratio is at least 1, or
// below it by less than two default servers differ.
func (d redisVsDefault) AtLeastDefault() bool { return d.Ratio >= 1/(1+d.Resolution) }

func (p *PeerReport) redisAgainstDefault(sc string) (redisVsDefault, bool) {
	var out redisVsDefault
	var drps, rrps, dcpu, rcpu, ratio, cpuRatio, apart []float64
	for round := range p.Rounds {
		var first, second, r *Result
		for i := range p.Runs {
			run := &p.Runs[i]
			if run.Pair != pairRedisVsDefault || run.Scenario != sc || run.Round != round {
				continue
			}
			switch {
			case mode(run.Mode) == modeCached:
				r = &run.Result
			case mode(run.Mode) == modeDefault && run.Control:
				second = &run.Result
			case mode(run.Mode) == modeDefault:
				first = &run.Result
			}
		}
		if first == nil || second == nil || r == nil || first.RPS <= 0 || second.RPS <= 0 ||
			r.ServerCPUPerRequest <= 0 || first.ServerCPUPerRequest <= 0 || second.ServerCPUPerRequest <= 0 {
			continue
		}
		out.Rounds++
		d := math.Sqrt(first.RPS * second.RPS)
		c := math.Sqrt(float64(first.ServerCPUPerRequest) * float64(second.ServerCPUPerRequest))
		drps, rrps = append(drps, d), append(rrps, r.RPS)
		dcpu, rcpu = append(dcpu, c), append(rcpu, float64(r.ServerCPUPerRequest))
		ratio = append(ratio, r.RPS/d)
		cpuRatio = append(cpuRatio, c/float64(r.ServerCPUPerRequest))
		apart = append(apart, math.Abs(math.Log(second.RPS/first.RPS)))
	}
	if out.Rounds == 0 {
		return out, false
	}
	out.DefaultRPS, out.RedisRPS = median(drps), median(rrps)
	out.DefaultCPU, out.RedisCPU = time.Duration(median(dcpu)), time.Duration(median(rcpu))
	out.Ratio, out.CPURatio = median(ratio), median(cpuRatio)
	out.Resolution = math.Expm1(median(apart))
	return out, true
}

// runPeerMode runs the comparison's rounds for one Taskgraph mode.
func runPeerMode(ctx context.Context, c Config, m mode, pg peerTarget, users []*benchUser, ref map[*benchUser]peerAnswers,
	rdb *redis.Client, logf func(string, ...any)) ([]PeerRun, error) {
	if m.redis() {
		if err := flushBenchRedis(ctx, rdb); err != nil {
			return nil, err
		}
	}
	tg, err := startTaskgraph(ctx, c, m, users, ref)
	if err != nil {
		return nil, err
	}
	defer tg.stop()
	out, err := measurePairs(ctx, c, pg, tg, users, string(m), "", logf)
	if err != nil {
		return nil, err
	}
	if err := tg.proc.stop(); err != nil {
		return nil, err
	}
	return out, nil
}

// startTaskgraph starts a Taskgraph server in mode m and checks that it answers as PostGraphile did
// (else the comparison would not be fair); stop ends it.
func startTaskgraph(ctx context.Context, c Config, m mode, users []*benchUser, ref map[*benchUser]peerAnswers) (peerTarget, error) {
	proc, err := startServer(ctx, c, m)
	if err != nil {
		return peerTarget{}, err
	}
	t := peerTarget{mode: m, proc: proc, body: tgPeerBody, signedIn: true, client: httpClient(c.Concurrency, c.Gzip)}
	if err := checkSameAnswers(ctx, t.client, proc.url+"/graphql", users, ref); err != nil {
		t.stop()
		return peerTarget{}, fmt.Errorf("%s does not answer as PostGraphile did, so the comparison would not be fair: %w", m.title(), err)
	}
	return t, nil
}

// stop closes the target's connections and stops its server.
func (t peerTarget) stop() {
	t.client.CloseIdleConnections()
	_ = t.proc.stop()
}

// measurePeer runs one scenario against one server: fresh connections, a probe, then the load, with
// the server's CPU time, its database backends' CPU time and its peak memory.
func measurePeer(ctx context.Context, c Config, t peerTarget, users []*benchUser, sc scenario) (Result, error) {
	lc, err := newLoadClient(t.proc.url+"/graphql", c.Concurrency, c.Gzip)
	if err != nil {
		return Result{}, err
	}
	defer lc.close()
	op := httpOperation(lc, users, sc, c.Concurrency, t.body, t.signedIn)
	if err := probe(ctx, op); err != nil {
		return Result{}, err
	}
	rssSinceStart := t.proc.resetPeakRSS() != nil
	res, cpu, err := measure(ctx, c, op, t.proc.cmd.Process.Pid)
	if err != nil {
		return Result{}, err
	}
	r := newResult(sc, t.mode, res)
	r.MachineCPU, r.OthersCPU, r.ServerCPUPerRequest, r.DBCPUPerRequest = cpu.machine, cpu.others, cpu.perRequest, cpu.dbPerRequest
	if r.PeakRSS, err = t.proc.peakRSS(); err != nil {
		return Result{}, err
	}
	r.PeakRSSSinceStart = rssSinceStart
	return r, nil
}

// peerSummary is one server's figures for one scenario of the comparison.
type peerSummary struct {
	Scenario string
	Mode     mode
	Runs     int

	RPS, RPSMin, RPSMax float64       // median and range over runs
	P50, P99            time.Duration // medians over runs
	Errors, Requests    int64
	ServerCPU, DBCPU    time.Duration // per request, medians over runs
	PeakRSS             int64         // the largest peak over runs

	// Against PostGraphile, medians over the adjacent pairs (0 for PostGraphile itself): throughput,
	// requests per server CPU-second, requests per CPU-second of server and database backends
	// together, and p99 (Taskgraph's over PostGraphile's: below 1 is better).
	Ratio, CPURatio, TotalCPURatio, P99Ratio float64
}

// summarize computes the figures of scenario sc for mode m (modePostGraphile: over all its runs).
func (p *PeerReport) summarize(sc string, m mode) (peerSummary, bool) {
	s := peerSummary{Scenario: sc, Mode: m}
	var rps, cpu, dbcpu []float64
	var p50, p99 []float64
	for _, r := range p.Runs {
		if r.Scenario != sc || r.Mode != string(m) || r.Pair == pairRedisVsDefault {
			continue
		}
		s.Runs++
		rps = append(rps, r.RPS)
		p50 = append(p50, float64(r.P50))
		p99 = append(p99, float64(r.P99))
		cpu = append(cpu, float64(r.ServerCPUPerRequest))
		dbcpu = append(dbcpu, float64(r.DBCPUPerRequest))
		s.Errors += r.Errors
		s.Requests += r.Requests
		s.PeakRSS = max(s.PeakRSS, r.PeakRSS)
	}
	if s.Runs == 0 {
		return s, false
	}
	s.RPS, s.RPSMin, s.RPSMax = median(rps), slices.Min(rps), slices.Max(rps)
	s.P50, s.P99 = time.Duration(median(p50)), time.Duration(median(p99))
	s.ServerCPU, s.DBCPU = time.Duration(median(cpu)), time.Duration(median(dbcpu))
	if m == modePostGraphile {
		return s, true
	}
	var ratio, cpuRatio, totalRatio, p99Ratio []float64
	for _, pr := range p.pairs(sc, m) {
		tg, pg := pr[0], pr[1]
		if pg.RPS > 0 {
			ratio = append(ratio, tg.RPS/pg.RPS)
		}
		if tg.ServerCPUPerRequest > 0 {
			cpuRatio = append(cpuRatio, float64(pg.ServerCPUPerRequest)/float64(tg.ServerCPUPerRequest))
		}
		if tot := tg.ServerCPUPerRequest + tg.DBCPUPerRequest; tot > 0 {
			totalRatio = append(totalRatio, float64(pg.ServerCPUPerRequest+pg.DBCPUPerRequest)/float64(tot))
		}
		if pg.P99 > 0 {
			p99Ratio = append(p99Ratio, float64(tg.P99)/float64(pg.P99))
		}
	}
	s.Ratio, s.CPURatio, s.TotalCPURatio, s.P99Ratio = median(ratio), median(cpuRatio), median(totalRatio), median(p99Ratio)
	return s, true
}

// pairs returns the adjacent (Taskgraph, PostGraphile) runs of scenario sc paired with mode m.
func (p *PeerReport) pairs(sc string, m mode) [][2]Result {
	var out [][2]Result
	for round := range p.Rounds {
		var tg, pg *Result
		for i := range p.Runs {
			r := &p.Runs[i]
			if r.Scenario != sc || r.Pair != string(m) || r.Round != round {
				continue
			}
			if r.Mode == string(modePostGraphile) {
				pg = &r.Result
			} else {
				tg = &r.Result
			}
		}
		if tg != nil && pg != nil {
			out = append(out, [2]Result{*tg, *pg})
		}
	}
	return out
}

// median of xs (0 when empty); the mean of the middle two for an even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}
