package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
)

// Run performs the whole benchmark and returns its report (also written to c.Out unless empty).
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.Timeout, fmt.Errorf("the run took longer than -timeout %s", c.Timeout))
		defer cancel()
	}
	rep, err := run(ctx, c)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("bench: stopped (%v): %w", context.Cause(ctx), err)
	}
	return rep, err
}

func run(ctx context.Context, c Config) (*Report, error) {
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(log, "bench: "+format+"\n", args...)
	}
	rep := &Report{Config: c, Started: time.Now().UTC()}
	rep.Machine.LoadBefore = loadAverage()
	logf("%s of measured load ahead (plus seeding when needed, sign-in, statement counts and profiles); load average now %s",
		c.loadTime().Round(time.Second), rep.Machine.LoadBefore)

	// Both refusals come before anything is written: a database or Redis that is not the benchmark's
	// is left exactly as it was.
	rdb, err := redisClient(ctx, c.RedisURL)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	if err := claimRedis(ctx, rdb, c.ForceFlush, logf); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if _, err := claimDatabase(ctx, c.DatabaseURL, c.ForceReseed, logf); err != nil {
		return nil, fmt.Errorf("bench database: %w", err)
	}
	var peer peerInstall
	if c.Peer {
		if peer, err = preparePeer(ctx, c, logf); err != nil {
			return nil, err
		}
	}
	pool, err := openDatabase(ctx, c, logf)
	if err != nil {
		return nil, fmt.Errorf("bench database: %w", err)
	}
	defer pool.Close()
	if rep.Reseeded, err = ensureSeed(ctx, c, logf); err != nil {
		return nil, err
	}
	if err := rep.Machine.describe(ctx, pool, rdb, c.Out); err != nil {
		return nil, err
	}

	logf("signing in %d bench users and finding their deep-page cursors", c.benchUsers())
	users, err := prepareUsers(ctx, c, pool)
	if err != nil {
		return nil, err
	}
	scenarios := make([]scenario, len(c.Scenarios))
	for i, name := range c.Scenarios {
		scenarios[i] = scenarioByName(name, c.DeepOffset)
	}

	ceiling, err := runCeiling(ctx, c, users, scenarios, logf)
	if err != nil {
		return nil, err
	}
	rep.Results = append(rep.Results, ceiling...)
	for _, m := range serverModes() {
		results, err := runMode(ctx, c, m, users, scenarios, rdb, logf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.title(), err)
		}
		rep.Results = append(rep.Results, results...)
	}
	if c.Peer {
		if rep.Peer, err = runPeer(ctx, c, peer, users, rdb, logf); err != nil {
			return nil, err
		}
	}
	rep.evaluate()

	if c.ProfileDir != "" {
		for _, m := range rep.modesMissing() {
			logf("a target was missed with %s: profiling the %s scenario in-process", m.title(), c.ProfileScenario)
			body, peer := requestBody(step.body), c.Peer && rep.missedAgainstPeer(m)
			if peer {
				body = tgPeerBody
			}
			p, err := profileScenario(ctx, c, m, users, body, rdb, filepath.Join(c.ProfileDir, fmt.Sprintf("%s-%s.cpu.pprof", c.ProfileScenario, m)))
			if err != nil {
				return nil, fmt.Errorf("profile %s: %w", m.title(), err)
			}
			p.Peer = peer
			rep.Profiles = append(rep.Profiles, p)
		}
	}
	rep.Machine.LoadAfter = loadAverage()
	rep.Took = time.Since(rep.Started)
	if c.Out != "" {
		if err := os.MkdirAll(filepath.Dir(c.Out), 0o755); err != nil {
			return nil, fmt.Errorf("write report: %w", err)
		}
		if err := os.WriteFile(c.Out, []byte(rep.Markdown()), 0o644); err != nil {
			return nil, fmt.Errorf("write report: %w", err)
		}
	}
	return rep, nil
}

func redisClient(ctx context.Context, url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse -redis: %w", err)
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w (the cached run needs it)", opts.Addr, err)
	}
	return rdb, nil
}

// runCeiling runs every scenario's SQL directly through a pool of the server's size.
func runCeiling(ctx context.Context, c Config, users []*benchUser, scenarios []scenario, logf func(string, ...any)) ([]Result, error) {
	counter := &statementCounter{}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: c.DBMaxConns, Tracer: counter})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	var out []Result
	for _, sc := range scenarios {
		op := ceilingOperation(pool, users, sc)
		if err := probe(ctx, op); err != nil {
			return nil, fmt.Errorf("ceiling, %s: %w", sc.name, err)
		}
		logf("%-8s %-22s %d clients, %s + %s", sc.name, modeCeiling.title(), c.Concurrency, c.Warmup, c.Duration)
		before := counter.count()
		counter.takeTexts()
		res, cpu, err := measure(ctx, c, op, 0)
		if err != nil {
			return nil, err
		}
		r := newResult(sc, modeCeiling, res)
		r.MachineCPU, r.OthersCPU = cpu.machine, cpu.others
		r.SQL = counter.takeTexts()
		r.StatementsPerRequest = float64(counter.count()-before) / float64(max(res.total, 1))
		out = append(out, r)
	}
	return out, nil
}

// cpuUse is how busy the CPUs were during a run.
type cpuUse struct {
	machine    float64       // share of all cores busy (PostgreSQL, Redis, server, load generator, others)
	others     float64       // share of all cores busy with work that is not the benchmark's
	perRequest time.Duration // the server process's CPU time per request (0 when not measured)
	// dbPerRequest is the CPU time of the benchmark database's PostgreSQL backends per request (0
	// when not measured).
	dbPerRequest time.Duration
}

// measure runs a scenario's load (warmup included) and samples the machine's CPU, and the server
// process's when pid > 0, around it.
func measure(ctx context.Context, c Config, op operation, pid int) (loadResult, cpuUse, error) {
	database := dbName(c.DatabaseURL)
	before, err := sampleCPU(pid, database)
	if err != nil {
		return loadResult{}, cpuUse{}, err
	}
	res := runLoad(ctx, c.Concurrency, c.Warmup, c.Duration, op)
	if err := ctx.Err(); err != nil {
		return res, cpuUse{}, err
	}
	after, err := sampleCPU(pid, database)
	if err != nil {
		return res, cpuUse{}, err
	}
	use := cpuUse{machine: machineBusy(before, after), others: othersBusy(before, after)}
	if pid > 0 && res.total > 0 {
		use.perRequest = procCPU(before, after) / time.Duration(res.total)
		use.dbPerRequest = dbCPU(before, after) / time.Duration(res.total)
	}
	return res, use, nil
}

// probe sends one request before a run, so a broken setup fails in a second rather than after a
// whole run of errors.
func probe(ctx context.Context, op operation) error {
	pctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := op(pctx, 0, rand.New(rand.NewPCG(1, 1)))
	return err
}

// runMode starts the server in mode m, runs every scenario against it over HTTP, each followed by
// its statement count in-process (while the server process idles), and stops the server.
func runMode(ctx context.Context, c Config, m mode, users []*benchUser, scenarios []scenario, rdb *redis.Client,
	logf func(string, ...any)) ([]Result, error) {
	if m.redis() {
		// A cold cache for every run; the warmups fill it. claimRedis made sure this database is the
		// benchmark's.
		if err := flushBenchRedis(ctx, rdb); err != nil {
			return nil, err
		}
	}
	passer, err := newStatementPasser(ctx, c, m)
	if err != nil {
		return nil, err
	}
	defer passer.close()
	srv, err := startServer(ctx, c, m)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = srv.stop()
		}
	}()
	lc, err := newLoadClient(srv.url+"/graphql", c.Concurrency, c.Gzip)
	if err != nil {
		return nil, err
	}
	defer lc.close()

	var out []Result
	for _, sc := range scenarios {
		op := graphqlOperation(lc, users, sc, c.Concurrency)
		if err := probe(ctx, op); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
		logf("%-8s %-22s %d clients, %s + %s", sc.name, m.title(), c.Concurrency, c.Warmup, c.Duration)
		rssSinceStart := srv.resetPeakRSS() != nil
		var before redisCounters
		if m.redis() {
			if before, err = readRedisCounters(ctx, rdb); err != nil {
				return nil, err
			}
		}
		res, cpu, err := measure(ctx, c, op, srv.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		r := newResult(sc, m, res)
		r.MachineCPU, r.OthersCPU, r.ServerCPUPerRequest, r.DBCPUPerRequest = cpu.machine, cpu.others, cpu.perRequest, cpu.dbPerRequest

		if r.PeakRSS, err = srv.peakRSS(); err != nil {
			return nil, err
		}
		r.PeakRSSSinceStart = rssSinceStart
		if m.redis() {
			after, err := readRedisCounters(ctx, rdb)
			if err != nil {
				return nil, err
			}
			r.CacheHitRatio = cacheHitRatio(before, after)
		}
		pass, err := passer.count(c, users, sc)
		if err != nil {
			return nil, err
		}
		r.StatementsPerRequest, r.AppCacheHitRatio, r.SQL = pass.perRequest, pass.appHits, pass.texts
		out = append(out, r)
	}
	stopped = true
	if err := srv.stop(); err != nil {
		return nil, err
	}
	return out, nil
}

// loadTime is how long the run drives load, warmups included: the ceiling and each server mode for every
// scenario, and the comparison's pairs.
func (c Config) loadTime() time.Duration {
	runs := len(c.Scenarios) * (1 + len(serverModes()))
	if c.Peer {
		// Each setup against PostGraphile in pairs, then Redis between two default servers.
		runs += (len(peerModes())*2 + 3) * c.PeerRounds * len(peerScenarioNames())
	}
	return time.Duration(runs) * (c.Warmup + c.Duration)
}
