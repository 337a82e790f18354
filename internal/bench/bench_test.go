package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// testRedisDB keeps the test's cache apart from a real benchmark's (database 15) and from the other
// tests' (database 0).
const testRedisDB = 14

// logWriter sends the benchmark's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestQuickRun runs the whole benchmark on tiny data: seed, sign-in, ceiling, the three server modes
// as separate processes, statement counts, the comparison with PostGraphile (installed with npm on
// first use) and the report.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark end to end (about a minute; the first run also installs PostGraphile)")
	}
	_, databaseURL := unusedDatabase(t) // the benchmark creates (and marks) its own
	c := QuickConfig()
	c.DatabaseURL = databaseURL
	c.RedisURL = testenv.FlushedRedisDB(t, testRedisDB)
	c.Out = filepath.Join(t.TempDir(), "benchmarks.md")
	c.Scenarios = []string{ScenarioPage, ScenarioDeep, ScenarioMix}
	// Tiny runs miss targets, so every setup is profiled, as a real run profiles the ones that miss.
	c.ProfileDir = t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.ServerCommand = []string{exe}
	c.ServerEnv = []string{serveEnv + "=1"}
	c.Command = "go test ./internal/bench"
	c.Log = logWriter{t}
	if _, err := exec.LookPath("npm"); err != nil {
		// .ci/run installs npm; elsewhere the rest of the run is still worth testing.
		t.Log("npm is not on PATH: running without the comparison with PostGraphile")
		c.Peer = false
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rep, err := Run(ctx, c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.Reseeded {
		t.Error("first run on a fresh database did not seed")
	}
	md, err := os.ReadFile(c.Out)
	if err != nil {
		t.Fatalf("report not written: %v", err)
	}
	for _, sc := range c.Scenarios {
		for _, m := range []mode{modeCeiling, modeUncached, modeCached} {
			r, ok := rep.Result(sc, m)
			if !ok {
				t.Errorf("%s / %s: no result", sc, m)
				continue
			}
			if r.Requests == 0 || r.Errors != 0 {
				t.Errorf("%s / %s: %d requests, %d errors (first: %s)", sc, m, r.Requests, r.Errors, r.FirstError)
			}
			if r.P50 <= 0 || r.P99 < r.P50 || r.RPS <= 0 {
				t.Errorf("%s / %s: p50 %s p99 %s, %.0f req/s", sc, m, r.P50, r.P99, r.RPS)
			}
			// With the cache, repeats can be answered without SQL (the session and whole answers are cached).
			if m != modeCached && r.StatementsPerRequest < 1 {
				t.Errorf("%s / %s: %.2f statements per request, want at least the session lookup", sc, m, r.StatementsPerRequest)
			}
			if m != modeCeiling && r.PeakRSS <= 0 {
				t.Errorf("%s / %s: no server peak RSS", sc, m)
			}
			if row := "| " + sc + " | " + m.title() + " | "; !strings.Contains(string(md), row) {
				t.Errorf("report has no row starting %q", row)
			}
		}
	}
	// The mix is split by kind (in every mode), single-kind scenarios are not.
	for _, m := range []mode{modeCeiling, modeUncached, modeCached} {
		mix, _ := rep.Result(ScenarioMix, m)
		var n int64
		var names []string
		for _, k := range mix.Kinds {
			n += k.Requests
			names = append(names, k.Kind)
		}
		if strings.Join(names, ",") != "first page,task by id,updateTask" || n != mix.Requests {
			t.Errorf("mix / %s: kinds %v with %d requests, want first page, task by id and updateTask with %d", m, names, n, mix.Requests)
		}
		if page, _ := rep.Result(ScenarioPage, m); page.Kinds != nil {
			t.Errorf("page / %s: split by kind %+v", m, page.Kinds)
		}
		if row := "| mix | " + m.title() + " | updateTask | "; !strings.Contains(string(md), row) {
			t.Errorf("report has no latency-by-kind row starting %q", row)
		}
	}
	// The uncached page is exactly: session lookup, page with its owners joined, task counts.
	if r, _ := rep.Result(ScenarioPage, modeUncached); r.StatementsPerRequest != 3 {
		t.Errorf("uncached page: %.2f statements per request, want 3", r.StatementsPerRequest)
	}
	if r, _ := rep.Result(ScenarioPage, modeCeiling); r.StatementsPerRequest != 3 {
		t.Errorf("ceiling page: %.2f statements per request, want 3", r.StatementsPerRequest)
	}
	// The cached page reads only the client's own data: its repeats are answered whole, without SQL.
	if r, _ := rep.Result(ScenarioPage, modeCached); r.StatementsPerRequest != 0 {
		t.Errorf("cached page: %.2f statements per request, want 0 (answered from the response cache)", r.StatementsPerRequest)
	}
	if r, _ := rep.Result(ScenarioPage, modeCached); r.CacheHitRatio < 0.5 {
		t.Errorf("cached page: cache hit ratio %.2f, want most lookups answered by Redis", r.CacheHitRatio)
	}
	// A p99 target names what the same scenario's SQL alone reached, so a reader can tell a miss
	// the server causes from one the machine causes.
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Goal, "p99 <") && tg.Judged && !strings.Contains(tg.Measured, "its direct SQL alone: ") {
			t.Errorf("target %q measured %q: no direct-SQL p99 beside it", tg.Goal, tg.Measured)
		}
	}
	// Profiles are of the server as it runs: with Redis, the near cache answers (it holds a lease
	// only while the server's housekeeping runs), so Redis is rarely asked.
	for _, p := range rep.Profiles {
		if fi, err := os.Stat(p.Path); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", p.Path, err)
		}
		if m := mode(p.Mode); m.redis() && (p.RedisLookups < 0 || p.RedisLookups > 0.05) {
			t.Errorf("profile with Redis: %.3f cache lookups in Redis per request, want the near cache to answer", p.RedisLookups)
		}
	}
	if !slices.ContainsFunc(rep.Profiles, func(p Profile) bool { return mode(p.Mode).redis() }) {
		t.Error("no profile of the Redis setup")
	}
	// The ceiling must run the server's SQL: a change to the stores' statements shows up here.
	for sc, diff := range rep.SQLDrift() {
		t.Errorf("%s: the ceiling's SQL (internal/bench/ceiling.go) differs from the server's:\n%s", sc, strings.Join(diff, "\n"))
	}
	// The comparison: every scenario against PostGraphile and each Taskgraph mode, in adjacent pairs,
	// with the figures the issue asks for.
	if c.Peer {
		checkPeerReport(t, c, rep, string(md))
	}

	for _, want := range []string{"## Machine and run", "## Results", "## Latency by request kind", "## Targets", "## Closing note", "PostgreSQL ", "Redis "} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}

	// A second run on the same data reuses the seed.
	reseeded, err := ensureSeed(ctx, c, func(string, ...any) {})
	if err != nil || reseeded {
		t.Errorf("second ensureSeed: reseeded %v, err %v; want the seed reused", reseeded, err)
	}
}

// checkPeerReport checks TestQuickRun's comparison with PostGraphile.
func checkPeerReport(t *testing.T, c Config, rep *Report, md string) {
	t.Helper()
	if rep.Peer == nil {
		t.Fatal("no comparison with PostGraphile")
	}
	if !strings.HasPrefix(rep.Peer.PostGraphile, "5.") || !strings.HasPrefix(rep.Peer.Node, "v22.") {
		t.Errorf("peer: PostGraphile %q on Node.js %q, want 5.x on 22.x", rep.Peer.PostGraphile, rep.Peer.Node)
	}
	// Each setup against PostGraphile in pairs of runs, then Redis between two default servers.
	if want := (len(peerModes())*2 + 3) * c.PeerRounds * len(peerScenarioNames()); len(rep.Peer.Runs) != want {
		t.Errorf("peer: %d runs, want %d", len(rep.Peer.Runs), want)
	}
	for _, sc := range peerScenarioNames() {
		d, ok := rep.Peer.redisAgainstDefault(sc)
		if !ok || d.Rounds != c.PeerRounds || d.Ratio <= 0 || d.CPURatio <= 0 || d.DefaultRPS <= 0 || d.RedisRPS <= 0 || d.Resolution < 0 {
			t.Errorf("Redis against default, %s: %+v", sc, d)
		}
		goal := redisGoal(sc)
		if !slices.ContainsFunc(rep.Targets, func(tg Target) bool { return tg.Goal == goal && tg.Judged }) {
			t.Errorf("no judged target %q", goal)
		}
	}
	for _, sc := range peerScenarioNames() {
		for _, m := range append([]mode{modePostGraphile}, peerModes()...) {
			s, ok := rep.Peer.summarize(sc, m)
			if !ok || s.Requests == 0 || s.Errors != 0 || s.RPS <= 0 || s.P99 < s.P50 || s.ServerCPU <= 0 || s.PeakRSS <= 0 {
				t.Errorf("peer %s / %s: %+v", sc, m, s)
			}
			if m == modePostGraphile {
				continue
			}
			if len(rep.Peer.pairs(sc, m)) != c.PeerRounds || s.Ratio <= 0 || s.CPURatio <= 0 || s.P99Ratio <= 0 {
				t.Errorf("peer %s / %s: %d pairs, ratios %.2f %.2f %.2f", sc, m, len(rep.Peer.pairs(sc, m)), s.Ratio, s.CPURatio, s.P99Ratio)
			}
		}
	}
	// PostGraphile builds its rows in PostgreSQL: its database CPU must have been seen.
	if s, _ := rep.Peer.summarize(ScenarioPage, modePostGraphile); s.DBCPU <= 0 {
		t.Errorf("peer page / PostGraphile: no PostgreSQL CPU per request measured (%s)", s.DBCPU)
	}
	var peerGoals int
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Goal, "PostGraphile") && tg.Judged {
			peerGoals++
		}
	}
	if peerGoals < 8 {
		t.Errorf("%d judged targets against PostGraphile, want the issue's", peerGoals)
	}
	for _, want := range []string{"## Against PostGraphile", "| page | ", "| deep | ", "| task | ", "Taskgraph with Redis req/s", "allTasks(condition: {ownerId: $owner}"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestSeedRefusesForeignDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	database := testsupport.NewDatabase(t)
	if _, err := database.Pool.Exec(context.Background(),
		`INSERT INTO users (id, name, email, password_hash) VALUES (gen_random_uuid(), 'Ada', 'ada@example.com', 'x')`); err != nil {
		t.Fatal(err)
	}
	c := QuickConfig()
	c.DatabaseURL = database.URL
	_, err := ensureSeed(context.Background(), c, func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "did not create") {
		t.Fatalf("ensureSeed on a database with foreign users: err = %v, want a refusal", err)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := ParseFlags([]string{"-quick", "-users", "80", "-scenarios", "page, mix",
		"-server-env", "GOGC=200", "-server-env", "DB_MAX_CONNS=10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	q := QuickConfig()
	if c.Users != 80 || c.Tasks != q.Tasks || c.Concurrency != q.Concurrency || c.Duration != q.Duration {
		t.Errorf("-quick with -users 80: users %d tasks %d concurrency %d duration %s", c.Users, c.Tasks, c.Concurrency, c.Duration)
	}
	if strings.Join(c.Scenarios, ",") != "page,mix" {
		t.Errorf("scenarios = %v", c.Scenarios)
	}
	if strings.Join(c.ServerEnv, " ") != "GOGC=200 DB_MAX_CONNS=10" {
		t.Errorf("server env = %q", c.ServerEnv)
	}
	if !c.Peer || c.PeerRounds != 1 || c.ForceReseed || c.ForceFlush {
		t.Errorf("-quick: peer %v with %d rounds, force-reseed %v, force-flush %v; want the peer, one round, no force", c.Peer, c.PeerRounds, c.ForceReseed, c.ForceFlush)
	}
	if p, err := ParseFlags([]string{"-peer=false", "-peer-rounds", "5", "-force-reseed", "-force-flush"}, io.Discard); err != nil ||
		p.Peer || p.PeerRounds != 5 || !p.ForceReseed || !p.ForceFlush {
		t.Errorf("-peer=false -peer-rounds 5 -force-reseed -force-flush: %+v, %v", p, err)
	}
	d, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.loadTime(); got != (16+54+27)*12*time.Second {
		t.Errorf("default load time %s, want 19m24s (16 runs, 54 against PostGraphile and 27 of Redis against default, 12 s each)", got)
	}
	if d.Users != 10_000 || d.Tasks != 1_000_000 || d.Concurrency != 32 || d.benchUsers() != 64 || len(d.Scenarios) != 4 || !d.Peer || d.PeerRounds != 3 {
		t.Errorf("defaults: %+v (bench users %d)", d, d.benchUsers())
	}
	for _, args := range [][]string{
		{"-database", "postgres://postgres@db.example.com:5432/x"},
		{"-redis", "redis://10.0.0.5:6379/0"},
		{"-scenarios", "page,bogus"},
		{"-tasks", "100"},
		{"-server-env", "GOGC"},
		{"-server-env", "=1"},
		{"-peer-rounds", "0"},
	} {
		if _, err := ParseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestPercentileAndRate(t *testing.T) {
	var r loadResult
	for i := 1; i <= 100; i++ {
		r.latencies = append(r.latencies, time.Duration(i)*time.Millisecond)
	}
	r.requests, r.elapsed = 100, 2*time.Second
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 95: 95 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := r.percentile(p); got != want {
			t.Errorf("p%v = %s, want %s", p, got, want)
		}
	}
	if r.rps() != 50 {
		t.Errorf("rps = %v, want 50", r.rps())
	}
	if (loadResult{}).percentile(50) != 0 {
		t.Error("percentile of nothing should be 0")
	}
}

// TestLatencyByKind feeds runLoad an operation whose clients alternate between a fast kind and a slow
// one: every latency must be filed under the kind that produced it, and the report must show them.
func TestLatencyByKind(t *testing.T) {
	const (
		concurrency = 2
		fast        = time.Millisecond
		slow        = 20 * time.Millisecond
	)
	sent := make([]int, concurrency) // requests per client; each client only touches its own
	op := func(ctx context.Context, w int, _ *rand.Rand) (stepKind, error) {
		kind, d := stepPage, fast
		if sent[w]%2 == 1 {
			kind, d = stepUpdate, slow
		}
		sent[w]++
		time.Sleep(d)
		return kind, nil
	}
	res := runLoad(context.Background(), concurrency, 30*time.Millisecond, 400*time.Millisecond, op)

	if len(res.byKind) != 2 {
		t.Fatalf("kinds: %d, want 2 (first page and updateTask): %v", len(res.byKind), res.byKind)
	}
	page, update := res.byKind[stepPage], res.byKind[stepUpdate]
	if got := int64(len(page) + len(update)); got != res.requests || got != int64(len(res.latencies)) {
		t.Errorf("%d + %d latencies by kind, want %d requests (%d latencies)", len(page), len(update), res.requests, len(res.latencies))
	}
	// Each client alternates, so the measured window holds as many of each kind, give or take one per client.
	if diff := len(page) - len(update); diff < -concurrency || diff > concurrency || len(update) < 5 {
		t.Errorf("%d first pages and %d updates, want about as many of each", len(page), len(update))
	}
	for k, l := range res.byKind {
		if !slices.IsSorted(l) {
			t.Errorf("%s latencies are not sorted", k)
		}
	}
	if update[0] < slow {
		t.Errorf("fastest updateTask took %s, less than its %s sleep: latencies filed under the wrong kind", update[0], slow)
	}

	r := newResult(scenarioByName(ScenarioMix, 100), modeUncached, res)
	if len(r.Kinds) != 2 || r.Kinds[0].Kind != "first page" || r.Kinds[1].Kind != "updateTask" {
		t.Fatalf("Kinds = %+v, want first page then updateTask", r.Kinds)
	}
	p, u := r.Kinds[0], r.Kinds[1]
	if p.Requests != int64(len(page)) || u.Requests != int64(len(update)) {
		t.Errorf("kind counts %d, %d; want %d, %d", p.Requests, u.Requests, len(page), len(update))
	}
	if !(p.P50 < u.P50) || u.P50 < slow || u.P99 < slow || p.P50 > p.P95 || p.P95 > p.P99 || u.P50 > u.P95 || u.P95 > u.P99 {
		t.Errorf("first page p50/p95/p99 %s/%s/%s, updateTask %s/%s/%s: want the updates slower, each at least %s",
			p.P50, p.P95, p.P99, u.P50, u.P95, u.P99, slow)
	}
	if share := p.Share(r) + u.Share(r); share < 0.999 || share > 1.001 {
		t.Errorf("shares sum to %v, want 1", share)
	}

	// A single-kind scenario gets no breakdown, and the report shows one only when there is one.
	single := newResult(scenarioByName(ScenarioPage, 100), modeUncached,
		loadResult{requests: 2, latencies: []time.Duration{1, 2}, byKind: map[stepKind][]time.Duration{stepPage: {1, 2}}})
	if single.Kinds != nil {
		t.Errorf("single-kind result has Kinds %+v", single.Kinds)
	}
	rep := &Report{Config: QuickConfig(), Results: []Result{single}}
	var text strings.Builder
	rep.WriteText(&text)
	if md := rep.Markdown(); strings.Contains(md, "Latency by request kind") || strings.Contains(text.String(), "Latency by request kind") {
		t.Error("report shows latency by kind without a scenario that mixes kinds")
	}
	rep.Results = append(rep.Results, r)
	text.Reset()
	rep.WriteText(&text)
	md := rep.Markdown()
	row := fmt.Sprintf("| mix | %s | updateTask | %d | %.1f%% | %s | %s | %s |", modeUncached.title(), u.Requests, 100*u.Share(r),
		msNum(u.P50), msNum(u.P95), msNum(u.P99))
	if !strings.Contains(md, "## Latency by request kind") || !strings.Contains(md, row) {
		t.Errorf("Markdown lacks the latency-by-kind section or its row %q", row)
	}
	if !strings.Contains(text.String(), "Latency by request kind:") || !strings.Contains(text.String(), "first page") {
		t.Errorf("text output lacks the latency-by-kind table:\n%s", text.String())
	}
}

func TestCacheHitRatio(t *testing.T) {
	before := redisCounters{hits: 100, misses: 50, mgets: 10}
	// 20 lookups (MGETs), each also missing the absent epoch key: 30 entity hits, 10 entity misses.
	after := redisCounters{hits: 130, misses: 50 + 20 + 10, mgets: 30}
	if got := cacheHitRatio(before, after); got != 0.75 {
		t.Errorf("epoch absent: ratio %v, want 0.75", got)
	}
	after.epochSet, after.hits, after.misses = true, 130+20, 60
	if got := cacheHitRatio(before, after); got != 0.75 {
		t.Errorf("epoch present: ratio %v, want 0.75", got)
	}
	if got := cacheHitRatio(before, before); got != -1 {
		t.Errorf("no lookups: ratio %v, want -1", got)
	}
}

func TestCheckAnswer(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		ok     bool
	}{
		{200, `{"data":{"tasks":{"edges":[]}}}`, true},
		{200, `{"errors":[{"message":"x"}],"data":null}`, false},
		{200, `{"data":{"task":null},"errors":[{"message":"x"}]}`, false},
		{401, `{"errors":[]}`, false},
		{200, `{"data":null}`, false},
	} {
		if err := checkAnswer(tc.status, []byte(tc.body)); (err == nil) != tc.ok {
			t.Errorf("checkAnswer(%d, %s) = %v, want ok %v", tc.status, tc.body, err, tc.ok)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1000000: "1,000,000", 10000: "10,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSampleCPU(t *testing.T) {
	a, err := sampleCPU(os.Getpid(), "taskgraph_bench")
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); { // burn a little CPU
	}
	time.Sleep(20 * time.Millisecond) // let the kernel's counters tick
	b, err := sampleCPU(os.Getpid(), "taskgraph_bench")
	if err != nil {
		t.Fatal(err)
	}
	if busy := machineBusy(a, b); busy < 0 || busy > 1 {
		t.Errorf("machine busy = %v, want 0..1", busy)
	}
	if others := othersBusy(a, b); others < 0 || others > 1 {
		t.Errorf("others busy = %v, want 0..1", others)
	}
	if _, ok := b.ours[os.Getpid()]; !ok {
		t.Error("this process is not among the benchmark's own processes")
	}
	if procCPU(a, b) < 0 || a.proc < 0 {
		t.Errorf("process CPU = %s (first sample %d ticks)", procCPU(a, b), a.proc)
	}
	if rss, err := procStatusBytes(os.Getpid(), "VmHWM"); err != nil || rss <= 0 {
		t.Errorf("VmHWM = %d, %v", rss, err)
	}
}

func TestBreakdown(t *testing.T) {
	top := `Showing nodes accounting for 1.50s, 100% of 1.50s total
      flat  flat%   sum%        cum   cum%
     0.50s 33.33% 33.33%      0.90s 60.00%  runtime.mallocgc
     300ms 20.00% 53.33%      0.30s 20.00%  github.com/99designs/gqlgen/graphql.ResolveField[go.shape.*uint8]
     0.40s 26.67% 80.00%      0.40s 26.67%  internal/runtime/syscall/linux.Syscall6
     0.30s 20.00%   100%      0.30s 20.00%  main.somethingElse`
	got := breakdown(top)
	for _, want := range []string{"33.3%", "memory allocation", "gqlgen executor", "network system calls", "other", "1.5s  total"} {
		if !strings.Contains(got, want) {
			t.Errorf("breakdown lacks %q:\n%s", want, got)
		}
	}
}

// The report the run rewrites does not make the measured code "uncommitted"; any other change does.
func TestWorkTreeRevisionIgnoresTheReport(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("init", "-q")
	for _, f := range []string{"report.md", "main.go"} {
		if err := os.WriteFile(f, []byte("v1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("add", ".")
	git("commit", "-qm", "first")
	if err := os.WriteFile("report.md", []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := workTreeRevision("report.md"); !strings.HasSuffix(got, "(work tree clean at run time)") {
		t.Errorf("with only the report changed: %q, want clean", got)
	}
	if err := os.WriteFile("main.go", []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := workTreeRevision("report.md"); !strings.HasSuffix(got, "plus uncommitted changes to 1 tracked files (work tree at run time)") {
		t.Errorf("with main.go changed: %q, want 1 uncommitted file", got)
	}
}
