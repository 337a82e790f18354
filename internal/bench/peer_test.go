package bench

import (
	"context"
	"math"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testenv"
)

// TestPeerSameAnswers starts PostGraphile and the Taskgraph server over a seeded database and checks
// that the comparison's documents get the same rows from both, then that the check notices when they
// do not (a changed title, a missing row, a different hasNextPage, another priority).
func TestPeerSameAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostGraphile (npm) and the server")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not on PATH (.ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, url := unusedDatabase(t)
	c := QuickConfig()
	c.DatabaseURL, c.RedisURL = url, testenv.FlushedRedisDB(t, 11)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.ServerCommand, c.ServerEnv = []string{exe}, []string{serveEnv + "=1"}

	inst, err := preparePeer(ctx, c, t.Logf)
	if err != nil {
		t.Fatalf("install PostGraphile: %v", err)
	}
	pool, err := openDatabase(ctx, c, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := ensureSeed(ctx, c, t.Logf); err != nil {
		t.Fatal(err)
	}
	users, err := prepareUsers(ctx, c, pool)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := startPeer(ctx, c, inst)
	if err != nil {
		t.Fatalf("start PostGraphile: %v", err)
	}
	defer func() { _ = pg.stop() }()
	client := httpClient(2, false)
	if err := preparePeerUsers(ctx, c, client, pg.url+"/graphql", users); err != nil {
		t.Fatal(err)
	}
	ref := map[*benchUser]peerAnswers{}
	for _, u := range users {
		if ref[u], err = fetchPeerAnswers(ctx, client, pg.url+"/graphql", u, true); err != nil {
			t.Fatal(err)
		}
	}
	tg, err := startServer(ctx, c, modeUncached)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tg.stop() }()
	tgURL := tg.url + "/graphql"
	if err := checkSameAnswers(ctx, client, tgURL, users, ref); err != nil {
		t.Fatalf("the servers disagree: %v", err)
	}
	u := users[0]
	if got := ref[u].deep.Tasks[0].ID; got == ref[u].page.Tasks[0].ID || len(ref[u].deep.Tasks) != 20 {
		t.Errorf("deep page starts with %s, the first page with %s: the deep cursor did not move", got, ref[u].page.Tasks[0].ID)
	}

	good := ref[u]
	for name, change := range map[string]func(a *peerAnswers){
		"title":       func(a *peerAnswers) { a.page.Tasks[3].Title += "!" },
		"missing row": func(a *peerAnswers) { a.deep.Tasks = a.deep.Tasks[:19] },
		"hasNextPage": func(a *peerAnswers) { a.page.HasNextPage = !a.page.HasNextPage },
		"priority":    func(a *peerAnswers) { a.tasks[1].Priority = "NONE" },
		"owner":       func(a *peerAnswers) { a.tasks[0].OwnerID = uuid.New() },
	} {
		bad := peerAnswers{page: clonePage(good.page), deep: clonePage(good.deep), tasks: append([]sameTask(nil), good.tasks...)}
		change(&bad)
		ref[u] = bad
		if err := checkSameAnswers(ctx, client, tgURL, users, ref); err == nil || !strings.Contains(err.Error(), "bench user 1") {
			t.Errorf("%s changed on PostGraphile's side: check says %v, want a difference for bench user 1", name, err)
		}
	}
}

func clonePage(p samePage) samePage {
	p.Tasks = append([]sameTask(nil), p.Tasks...)
	return p
}

// TestNormalizeBothSpellings: one task as each server writes it maps to the same value.
func TestNormalizeBothSpellings(t *testing.T) {
	task, owner := uuid.New(), uuid.New()
	due := "2026-12-05T07:24:13.984735"
	tg := rawTask{ID: globalid.Encode(globalid.KindTask, task), Title: "T", Status: "TODO", Priority: []byte(`"HIGH"`),
		DueAt: ptr(due + "Z"), Tags: []string{"a"}, Owner: &rawOwner{ID: globalid.Encode(globalid.KindUser, owner), Name: "Ada"}}
	pg := rawTask{ID: pgNodeID("Task", task), Title: "T", Status: "TODO", Priority: []byte(`2`),
		DueAt: ptr(due + "+00:00"), Tags: []string{"a"}, UserByOwnerID: &rawOwner{ID: pgNodeID("User", owner), Name: "Ada"}}
	a, err := tg.normalize(false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pg.normalize(true)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != task || a.OwnerID != owner || a.Priority != "HIGH" || a.DueAt == nil {
		t.Errorf("Taskgraph's task normalized to %+v", a)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the same task differs: %s", firstDifference(samePage{Tasks: []sameTask{a}}, samePage{Tasks: []sameTask{b}}))
	}
	pg.DueAt = ptr("2026-12-05T07:24:13.984736+00:00")
	b, _ = pg.normalize(true)
	if diff := firstDifference(samePage{Tasks: []sameTask{a}}, samePage{Tasks: []sameTask{b}}); !strings.Contains(diff, "row 1") {
		t.Errorf("a microsecond apart: %s, want row 1 named", diff)
	}
	if _, err := (rawTask{ID: pgNodeID("User", task), Priority: []byte(`1`)}).normalize(true); err == nil {
		t.Error("a User id accepted as a Task id")
	}
}

func ptr[T any](v T) *T { return &v }

// TestPeerSummary: ratios are medians over the adjacent pairs of one mode, PostGraphile's own figures
// cover all its runs.
func TestPeerSummary(t *testing.T) {
	run := func(round int, pair, m mode, rps float64, cpu, db, p99 time.Duration) PeerRun {
		return PeerRun{Round: round, Pair: string(pair), Result: Result{Scenario: ScenarioPage, Mode: string(m), RPS: rps,
			ServerCPUPerRequest: cpu, DBCPUPerRequest: db, P50: p99 / 2, P99: p99, Requests: int64(rps)}}
	}
	ms := time.Millisecond
	p := &PeerReport{Rounds: 3, Runs: []PeerRun{
		run(0, modeDefault, modePostGraphile, 1000, 1*ms, 1*ms, 10*ms), run(0, modeDefault, modeDefault, 2000, ms/2, ms/2, 5*ms),
		run(1, modeDefault, modeDefault, 1000, ms, ms, 20*ms), run(1, modeDefault, modePostGraphile, 2000, ms, ms, 10*ms),
		run(2, modeDefault, modePostGraphile, 1000, ms, ms, 10*ms), run(2, modeDefault, modeDefault, 3000, ms/4, ms/4, 10*ms),
		run(0, modeCached, modePostGraphile, 500, ms, ms, 10*ms), run(0, modeCached, modeCached, 5000, ms/10, 0, ms),
	}}
	d, ok := p.summarize(ScenarioPage, modeDefault)
	if !ok || d.Runs != 3 || d.Ratio != 2 || d.RPS != 2000 || d.RPSMin != 1000 || d.RPSMax != 3000 {
		t.Errorf("default: %+v; want ratio 2 (median of 2, 0.5, 3), req/s 2000 (1000–3000)", d)
	}
	if d.CPURatio != 2 || d.TotalCPURatio != 2 || d.P99Ratio != 1 {
		t.Errorf("default: CPU ratio %.2f, total %.2f, p99 %.2f; want 2, 2, 1", d.CPURatio, d.TotalCPURatio, d.P99Ratio)
	}
	pg, _ := p.summarize(ScenarioPage, modePostGraphile)
	if pg.Runs != 4 || pg.RPS != 1000 || pg.Ratio != 0 {
		t.Errorf("PostGraphile: %+v; want 4 runs, median 1000", pg)
	}
	r, _ := p.summarize(ScenarioPage, modeCached)
	if r.Ratio != 10 || r.TotalCPURatio != 20 {
		t.Errorf("Redis: ratio %.2f, total CPU ratio %.2f; want 10 and 20 (it paired only with its own PostGraphile run)", r.Ratio, r.TotalCPURatio)
	}
	if _, ok := p.summarize(ScenarioTask, modeDefault); ok {
		t.Error("a scenario without runs has a summary")
	}
	if median([]float64{3, 1, 2, 10}) != 2.5 || median(nil) != 0 {
		t.Error("median")
	}
}

// The per-CPU and p99 goals are the for the default setup (and the Redis one that must match
// it); with every cache off it asks only for page ≥ 1×, so a cache-off run below 1.5× per CPU is
// shown but not judged.
func TestPeerTargetsScope(t *testing.T) {
	ms := time.Millisecond
	run := func(round int, pair, m mode, rps float64, cpu, p99 time.Duration) PeerRun {
		return PeerRun{Round: round, Pair: string(pair), Result: Result{Scenario: ScenarioPage, Mode: string(m), RPS: rps,
			ServerCPUPerRequest: cpu, P50: p99 / 2, P99: p99, Requests: int64(rps)}}
	}
	var runs []PeerRun
	for _, m := range []mode{modeDefault, modeCached, modeUncached} {
		cpu, p99 := ms/2, 5*ms // twice PostGraphile's requests per CPU-second, half its p99
		if m == modeUncached {
			cpu, p99 = ms*10/12, 11*ms // 1.2× and 1.1×
		}
		runs = append(runs, run(0, m, modePostGraphile, 1000, ms, 10*ms), run(0, m, m, 2000, cpu, p99))
	}
	targets := (&PeerReport{Rounds: 1, Runs: runs}).targets(32)
	judged := map[string]Target{}
	for _, tg := range targets {
		if tg.Judged {
			judged[tg.Goal] = tg
		}
	}
	for _, setup := range []string{"default (no Redis)", "with Redis"} {
		for _, goal := range []string{setup + ": requests per server CPU-second ≥ 1.5× PostGraphile's, every scenario",
			setup + ": p99 at 32 clients no worse than PostGraphile's, every scenario"} {
			if tg, ok := judged[goal]; !ok || !tg.Met {
				t.Errorf("%q: %+v, want judged and met", goal, tg)
			}
		}
	}
	for goal := range judged {
		if strings.HasPrefix(goal, "every cache off") && !strings.Contains(goal, "page ≥ 1×") {
			t.Errorf("judged %q with every cache off; the issue asks only for page ≥ 1× there", goal)
		}
	}
	if tg := judged["every cache off: page ≥ 1× PostGraphile's req/s"]; !tg.Met {
		t.Errorf("every cache off, page: %+v, want judged and met", tg)
	}
}

// A setup that missed a goal against PostGraphile is profiled on the comparison's documents; one
// that missed only the benchmark's own goals, on the scenario's.
func TestMissedAgainstPeer(t *testing.T) {
	r := &Report{Targets: []Target{
		{Goal: "cache off: p99 < 25 ms", Mode: string(modeUncached), Judged: true},
		{Goal: "default (no Redis): page ≥ 2× PostGraphile's req/s", Mode: string(modeDefault), Peer: true, Judged: true},
		{Goal: "with Redis: page ≥ 3× PostGraphile's req/s", Mode: string(modeCached), Peer: true, Judged: true, Met: true},
	}}
	for m, want := range map[mode]bool{modeDefault: true, modeUncached: false, modeCached: false} {
		if got := r.missedAgainstPeer(m); got != want {
			t.Errorf("%s: missedAgainstPeer %v, want %v", m, got, want)
		}
	}
}

// "Redis ≥ default" compares Redis with both default servers around it, and calls a shortfall
// smaller than the two identical default servers' difference no shortfall; a larger one is missed.
func TestRedisAgainstDefaultJudgedAgainstTwoDefaultServers(t *testing.T) {
	ms := time.Millisecond
	type round struct{ first, redis, second float64 }
	report := func(rounds ...round) *PeerReport {
		p := &PeerReport{Rounds: len(rounds)}
		for i, r := range rounds {
			run := func(m mode, control bool, rps float64, cpu time.Duration) PeerRun {
				return PeerRun{Round: i, Pair: pairRedisVsDefault, Control: control,
					Result: Result{Scenario: ScenarioPage, Mode: string(m), RPS: rps, ServerCPUPerRequest: cpu}}
			}
			p.Runs = append(p.Runs, run(modeDefault, false, r.first, ms), run(modeCached, false, r.redis, 2*ms),
				run(modeDefault, true, r.second, 4*ms))
		}
		return p
	}
	for _, tc := range []struct {
		name       string
		rounds     []round
		ratio, res float64
		met        bool
	}{
		// Redis equals the geometric mean of its neighbours, not either one of them.
		{"between its neighbours", []round{{1000, 1095.445, 1200}}, 1, 0.2, true},
		{"better", []round{{1000, 1100, 1000}, {1000, 1100, 1000}}, 1.1, 0, true},
		// Two equal servers read 3.9% apart, Redis 2% below them: not a difference this run can see.
		{"below by less than the defaults differ", []round{{1000, 990, 1040}, {1040, 1000, 1000}, {1000, 995, 1030}}, 0.980, 0.040, true},
		// The default servers agree to 0.5%, Redis is 3% below: a measured shortfall.
		{"below by more", []round{{1000, 970, 1005}, {1005, 975, 1000}, {1000, 972, 1005}}, 0.970, 0.005, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := report(tc.rounds...)
			d, ok := p.redisAgainstDefault(ScenarioPage)
			if !ok || d.Rounds != len(tc.rounds) {
				t.Fatalf("redisAgainstDefault: %+v, %v", d, ok)
			}
			if math.Abs(d.Ratio-tc.ratio) > 0.001 || math.Abs(d.Resolution-tc.res) > 0.001 {
				t.Errorf("ratio %.4f, resolution %.4f; want %.3f and %.3f", d.Ratio, d.Resolution, tc.ratio, tc.res)
			}
			if d.CPURatio != 1 { // 2 ms against the geometric mean of 1 and 4 ms
				t.Errorf("CPU ratio %.3f, want 1", d.CPURatio)
			}
			var judged bool
			for _, tg := range p.targets(32) {
				if tg.Goal == redisGoal(ScenarioPage) {
					judged = tg.Judged
					if tg.Met != tc.met {
						t.Errorf("%s: met %v, want %v", tg.Measured, tg.Met, tc.met)
					}
				}
			}
			if !judged {
				t.Errorf("goal %q not judged", redisGoal(ScenarioPage))
			}
		})
	}
}
