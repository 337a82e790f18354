package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// lbRedisDB is the Redis logical database the instances share; it is flushed before and after.
const lbRedisDB = 7

// TestNginxFrontsThreeInstances runs deploy/nginx.conf for real (as localNginxConf makes it run here:
// free 127.0.0.1 ports for nginx and its upstreams, files under a temporary prefix): three `taskgraph
// serve` processes sharing one test database and one Redis database, behind nginx. Through nginx it checks what running several instances
// depends on: every public route of server.Routes reaches an instance, requests are spread, and rate
// limits, cache invalidation and persisted queries are shared; and that the client address nginx forwards is believed while one a client forges is not.
// The instances are started twice: with the default budgets for the shared-state checks (which read
// one task 13 times), then with a budget of 5 points per hour for the limit checks.
func TestNginxFrontsThreeInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx and three server processes; skipped with -short")
	}
	t.Parallel()
	nginxBin := tool(t, "nginx", "nginx-light")
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	// This package's TestMain does not give back testsupport's database claims; this is the only test
	// here that takes a database, so give them back when it ends (registered first, so it runs last).
	t.Cleanup(testsupport.ReleaseDatabases)
	database := testsupport.NewDatabase(t)
	redisURL := lbFlushRedis(t)

	t.Run("shared state", func(t *testing.T) {
		c := startLBCluster(t, bin, nginxBin, database.URL, redisURL, nil)
		t.Run("every public route reaches an instance", c.testPublicRoutes)
		t.Run("requests are spread over the instances", c.testSpread)
		t.Run("cache invalidation is shared", c.testCacheInvalidation)
		t.Run("persisted queries are shared", c.testPersistedQueries)
	})
	t.Run("shared limits", func(t *testing.T) {
		// A budget of 5 points: each query below costs 1.
		c := startLBCluster(t, bin, nginxBin, database.URL, redisURL, map[string]string{
			"RATE_LIMIT_POINTS_PER_HOUR": "5", "RATE_LIMIT_ANON_POINTS_PER_HOUR": "5",
		})
		t.Run("rate limits are shared", c.testSharedRateLimit)
		t.Run("forwarded client address", c.testForwardedFor)
	})
}

// lbFlushRedis empties the shared Redis database now and when the test ends. Test runs on one
// machine share the Redis server, so a file lock keeps two runs of this test from flushing each
// other's state; the lock is released when the test ends (or its process dies).
func lbFlushRedis(t *testing.T) string {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("taskgraph-test-redis-%d.lock", lbRedisDB)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	testenv.WaitFor(t, 45*time.Second, fmt.Sprintf("another test run to release Redis database %d (%s)", lbRedisDB, lock.Name()), func() bool {
		return syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
	})
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), DB: lbRedisDB})
	flush := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return rdb.FlushDB(ctx).Err()
	}
	if err := flush(); err != nil {
		_ = rdb.Close()
		t.Fatalf("redis database %d: %v", lbRedisDB, err)
	}
	t.Cleanup(func() {
		if err := flush(); err != nil {
			t.Errorf("flush redis database %d: %v", lbRedisDB, err)
		}
		_ = rdb.Close()
	})
	return testenv.RedisURL(lbRedisDB)
}

// ---------------------------------------------------------------------------------------------------
// The cluster: three instances and nginx
// ---------------------------------------------------------------------------------------------------

type lbBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lbBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lbBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type lbProcess struct {
	name    string
	cmd     *exec.Cmd
	out     *lbBuffer
	done    chan struct{}
	exitErr error
}

func startLBProcess(t *testing.T, name string, cmd *exec.Cmd) *lbProcess {
	t.Helper()
	p := &lbProcess{name: name, cmd: cmd, out: &lbBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *lbProcess) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to 10 s, then kills. It reports the exit error (nil: status 0).
func (p *lbProcess) stop(sig os.Signal) error {
	if p.running() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s did not exit within 10s of %v; killed", p.name, sig)
		}
	}
	return p.exitErr
}

type lbInstance struct {
	*lbProcess
	addr string // 127.0.0.1:port
	base string // http://addr
}

type lbCluster struct {
	t         *testing.T
	nginxURL  string
	prefix    string
	instances []*lbInstance
	nginx     *lbProcess
}

// lbFreeAddrs returns n distinct free 127.0.0.1 addresses.
func lbFreeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// startLBCluster starts three instances with the shared settings plus extra, then nginx in front of
// them; everything is stopped when t ends, and the instances must exit 0 with no error in their logs.
func startLBCluster(t *testing.T, bin, nginxBin, databaseURL, redisURL string, extra map[string]string) *lbCluster {
	t.Helper()
	addrs := lbFreeAddrs(t, 4)
	c := &lbCluster{t: t, nginxURL: "http://" + addrs[0]}

	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"APP_ENV=development", "DATABASE_URL=" + databaseURL, "REDIS_URL=" + redisURL,
		"JWT_SECRET=" + testJWTSecret, "TRUSTED_PROXIES=127.0.0.1/32", "LOG_LEVEL=info",
		"AUTH_RATE_LIMIT_PER_MINUTE=1000", "SHUTDOWN_DELAY=0s", "SHUTDOWN_TIMEOUT=5s",
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	for i, addr := range addrs[1:] {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(append([]string{}, env...), "HTTP_ADDR="+addr)
		inst := &lbInstance{lbProcess: startLBProcess(t, fmt.Sprintf("instance %d (%s)", i+1, addr), cmd), addr: addr, base: "http://" + addr}
		c.instances = append(c.instances, inst)
	}
	t.Cleanup(func() {
		for _, inst := range c.instances {
			if err := inst.stop(syscall.SIGTERM); err != nil {
				t.Errorf("%s: %v", inst.name, err)
			}
			for _, r := range lbLogRecords(inst.out.String()) {
				if r["level"] == "ERROR" {
					b, _ := json.Marshal(r)
					t.Errorf("%s logged an error: %s", inst.name, b)
				}
			}
			if t.Failed() {
				t.Logf("%s log (last 30 lines):\n%s", inst.name, lbTail(inst.out.String(), 30))
			}
		}
	})
	probe := &http.Client{Timeout: 2 * time.Second}
	for _, inst := range c.instances {
		testenv.WaitFor(t, 20*time.Second, inst.name+" to be ready", func() bool {
			if !inst.running() {
				t.Fatalf("%s exited (%v):\n%s", inst.name, inst.exitErr, inst.out.String())
			}
			return lbGetStatus(probe, inst.base+"/readyz") == http.StatusOK
		})
	}

	// nginx writes everything under the prefix. As root its workers run as nobody, which must be able
	// to enter the directory: a 0755 directory directly under the temp dir (t.TempDir's parent is 0700).
	prefix, err := os.MkdirTemp("", "taskgraph-nginx-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) })
	if err := os.Chmod(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	c.prefix = prefix
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, []byte(localNginxConf(t, addrs[0], addrs[1:])), 0o644); err != nil {
		t.Fatal(err)
	}
	// -e (nginx >= 1.19.5) moves the log nginx opens before it reads the configuration.
	args := []string{"-p", prefix + "/", "-c", conf, "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;"}
	c.nginx = startLBProcess(t, "nginx", exec.Command(nginxBin, args...))
	t.Cleanup(func() {
		if err := c.nginx.stop(syscall.SIGQUIT); err != nil {
			t.Errorf("nginx: %v", err)
		}
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx output:\n%s\nnginx error.log:\n%s", c.nginx.out.String(), errLog)
		}
	})
	testenv.WaitFor(t, 10*time.Second, "nginx to answer /readyz from an instance", func() bool {
		if !c.nginx.running() {
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx exited (%v):\n%s\n%s", c.nginx.exitErr, c.nginx.out.String(), errLog)
		}
		return lbGetStatus(probe, c.nginxURL+"/nginx-health") == http.StatusOK &&
			lbGetStatus(probe, c.nginxURL+"/readyz") == http.StatusOK
	})
	return c
}

func lbGetStatus(client *http.Client, url string) int {
	res, err := client.Get(url)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

func lbTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lbLogRecords parses JSON log lines, skipping anything else.
func lbLogRecords(s string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r map[string]any
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// servedBy waits until every request id appears in exactly one instance's access log and returns
// which instance (index into c.instances) served each.
func (c *lbCluster) servedBy(t *testing.T, ids ...string) map[string]int {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var got map[string]int
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("the instances to log requests %v", ids), func() bool {
		got = map[string]int{}
		for i, inst := range c.instances {
			for _, r := range lbLogRecords(inst.out.String()) {
				id, _ := r["request_id"].(string)
				if r["msg"] != "request" || !want[id] {
					continue
				}
				if prev, dup := got[id]; dup {
					t.Fatalf("request %s was served twice (instances %d and %d)", id, prev+1, i+1)
				}
				got[id] = i
			}
		}
		return len(got) == len(want)
	})
	return got
}

// nginxUpstreams maps request ids to the upstream address in nginx's access log.
func (c *lbCluster) nginxUpstreams(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.prefix, "access.log"))
	if err != nil {
		t.Fatalf("nginx access log: %v", err)
	}
	out := map[string]string{}
	for _, r := range lbLogRecords(string(b)) {
		id, _ := r["request_id"].(string)
		up, _ := r["upstream"].(string)
		out[id] = up
	}
	return out
}

// metric sums the samples of name whose labels include every label in match, on one instance.
func (inst *lbInstance) metric(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	res, err := http.Get(inst.base + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", inst.name, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%s /metrics: %d %v", inst.name, res.StatusCode, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("%s /metrics: bad sample %q", inst.name, line)
		}
		sum += v
	}
	return sum
}

// ---------------------------------------------------------------------------------------------------
// GraphQL over HTTP
// ---------------------------------------------------------------------------------------------------

type lbAnswer struct {
	Status int
	Header http.Header
	Body   []byte
	Doc    struct {
		Data       map[string]any   `json:"data"`
		Errors     []map[string]any `json:"errors"`
		Extensions map[string]any   `json:"extensions"`
	}
}

func (a lbAnswer) code() string {
	if len(a.Doc.Errors) == 0 {
		return ""
	}
	ext, _ := a.Doc.Errors[0]["extensions"].(map[string]any)
	s, _ := ext["code"].(string)
	return s
}

// remaining is extensions.cost.remaining (-1 when absent).
func (a lbAnswer) remaining() int {
	cost, _ := a.Doc.Extensions["cost"].(map[string]any)
	if f, ok := cost["remaining"].(float64); ok {
		return int(f)
	}
	return -1
}

// str follows a path of object keys in data.
func (a lbAnswer) str(path ...string) string {
	var v any = a.Doc.Data
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

type lbRequest struct {
	client    *http.Client // nil: a default client
	base      string
	token     string
	requestID string
	xff       string // X-Forwarded-For the client sends
	body      map[string]any
}

func (r lbRequest) do(t *testing.T) lbAnswer {
	t.Helper()
	body, err := json.Marshal(r.body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.requestID != "" {
		req.Header.Set("X-Request-ID", r.requestID)
	}
	if r.xff != "" {
		req.Header.Set("X-Forwarded-For", r.xff)
	}
	client := r.client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s/graphql: %v", r.base, err)
	}
	defer res.Body.Close()
	a := lbAnswer{Status: res.StatusCode, Header: res.Header}
	if a.Body, err = io.ReadAll(res.Body); err != nil {
		t.Fatalf("POST %s/graphql: reading the answer: %v", r.base, err)
	}
	if err := json.Unmarshal(a.Body, &a.Doc); err != nil {
		t.Fatalf("POST %s/graphql: answer %d is not JSON: %s", r.base, a.Status, a.Body)
	}
	if r.requestID != "" && res.Header.Get("X-Request-ID") != r.requestID {
		t.Errorf("X-Request-ID %q, want %q echoed", res.Header.Get("X-Request-ID"), r.requestID)
	}
	return a
}

func lbQuery(query string, vars map[string]any) map[string]any {
	return map[string]any{"query": query, "variables": vars}
}

// okData fails unless a is a 200 answer without errors.
func okData(t *testing.T, what string, a lbAnswer) {
	t.Helper()
	if a.Status != http.StatusOK || len(a.Doc.Errors) > 0 {
		t.Fatalf("%s: %d %s", what, a.Status, a.Body)
	}
}

var lbUsers int

// register creates a user through nginx and returns its access token.
func (c *lbCluster) register(t *testing.T, name string) string {
	t.Helper()
	lbUsers++
	a := lbRequest{base: c.nginxURL, body: lbQuery(`mutation($input: RegisterInput!) { register(input: $input) { accessToken } }`,
		map[string]any{"input": map[string]any{
			"name": name, "email": fmt.Sprintf("lb-%d-%d@example.com", lbUsers, time.Now().UnixNano()), "password": "password-lb-1",
		}})}.do(t)
	okData(t, "register", a)
	token := a.str("register", "accessToken")
	if token == "" {
		t.Fatalf("register: no token: %s", a.Body)
	}
	return token
}

// ---------------------------------------------------------------------------------------------------
// (0) Routes
// ---------------------------------------------------------------------------------------------------

// testPublicRoutes: a GET of every public route of server.Routes through nginx is answered by an
// instance (its access log has the request id), not by nginx. Complements TestPublicRoutesAreRouted,
// which reads the locations of deploy/nginx.conf.
func (c *lbCluster) testPublicRoutes(t *testing.T) {
	var ids []string
	for i, r := range routes(server.Public) {
		id := fmt.Sprintf("route-%d", i)
		ids = append(ids, id)
		req, err := http.NewRequest(http.MethodGet, c.nginxURL+r.ExamplePath(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-ID", id)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s through nginx: %v", r.ExamplePath(), err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		t.Logf("GET %s (%s) through nginx: %d", r.ExamplePath(), r.Pattern, res.StatusCode)
	}
	c.servedBy(t, ids...)
}

// ---------------------------------------------------------------------------------------------------
// (1) Spread
// ---------------------------------------------------------------------------------------------------

// testSpread: 30 queries through nginx reach all three instances. Each instance's access log and its
// own /metrics counter agree on how many it served, and nginx's access log names the same upstream.
func (c *lbCluster) testSpread(t *testing.T) {
	const n = 30
	route := `route="/graphql"`
	before := make([]float64, len(c.instances))
	for i, inst := range c.instances {
		before[i] = inst.metric(t, "taskgraph_http_requests_total", route)
	}
	var ids []string
	for i := range n {
		id := fmt.Sprintf("spread-%d", i)
		ids = append(ids, id)
		a := lbRequest{base: c.nginxURL, requestID: id, body: lbQuery(`query Spread { apiVersion }`, nil)}.do(t)
		okData(t, id, a)
		if a.str("apiVersion") == "" {
			t.Fatalf("%s: no apiVersion: %s", id, a.Body)
		}
	}
	served := c.servedBy(t, ids...)
	perLog := make([]int, len(c.instances))
	for _, i := range served {
		perLog[i]++
	}
	upstreams := c.nginxUpstreams(t)
	for id, i := range served {
		if up := upstreams[id]; up != c.instances[i].addr {
			t.Errorf("%s: nginx logged upstream %q, but %s served it", id, up, c.instances[i].name)
		}
	}
	// Metrics are counted when the handler returns, like the access log: poll briefly.
	perMetric := make([]int, len(c.instances))
	testenv.WaitFor(t, 5*time.Second, "the request counters to match the access logs", func() bool {
		same := true
		for i, inst := range c.instances {
			perMetric[i] = int(inst.metric(t, "taskgraph_http_requests_total", route) - before[i])
			same = same && perMetric[i] == perLog[i]
		}
		return same
	})
	for i, inst := range c.instances {
		if perLog[i] == 0 {
			t.Errorf("%s served none of %d requests through nginx (per instance: %v)", inst.name, n, perLog)
		}
	}
	t.Logf("%d requests through nginx served per instance: access logs %v, taskgraph_http_requests_total %v", n, perLog, perMetric)
}

// ---------------------------------------------------------------------------------------------------
// (2) Shared rate limits
// ---------------------------------------------------------------------------------------------------

// testSharedRateLimit: with RATE_LIMIT_POINTS_PER_HOUR=5, one user's 5 queries through nginx succeed
// (spread over several instances) and the 6th is 429 RATE_LIMITED; every instance, asked directly,
// then refuses the user too: the budget lives in the shared Redis, not in each instance.
func (c *lbCluster) testSharedRateLimit(t *testing.T) {
	token := c.register(t, "Limited")
	var ids []string
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("budget-%d", i)
		ids = append(ids, id)
		a := lbRequest{base: c.nginxURL, token: token, requestID: id, body: lbQuery(`query Budget { me { id } }`, nil)}.do(t)
		if i <= 5 {
			okData(t, id, a)
			if got := a.remaining(); got != 5-i {
				t.Errorf("%s: cost.remaining %d, want %d (one shared budget of 5)", id, got, 5-i)
			}
			continue
		}
		if a.Status != http.StatusTooManyRequests || a.code() != "RATE_LIMITED" || a.Header.Get("Retry-After") == "" {
			t.Fatalf("6th query through nginx: %d %s (Retry-After %q), want 429 RATE_LIMITED with Retry-After",
				a.Status, a.Body, a.Header.Get("Retry-After"))
		}
	}
	served := c.servedBy(t, ids...)
	distinct := map[int]bool{}
	for _, i := range served {
		distinct[i] = true
	}
	if len(distinct) < 2 {
		t.Errorf("the 6 queries all went to one instance (%v): the test does not show the budget is shared", served)
	}
	t.Logf("budget queries served by instance: %v", served)
	for i, inst := range c.instances {
		a := lbRequest{base: inst.base, token: token, requestID: fmt.Sprintf("budget-direct-%d", i+1), body: lbQuery(`query Budget { me { id } }`, nil)}.do(t)
		if a.Status != http.StatusTooManyRequests || a.code() != "RATE_LIMITED" {
			t.Errorf("%s directly after the budget was spent: %d %s, want 429 RATE_LIMITED", inst.name, a.Status, a.Body)
		}
	}
}

// ---------------------------------------------------------------------------------------------------
// (3) Shared cache invalidation
// ---------------------------------------------------------------------------------------------------

const lbTaskQuery = `query Task($id: ID!) { task(id: $id) { id title version } }`

// testCacheInvalidation: a task read 6 times through nginx (on several instances, from the shared
// cache: the hit counters grow), updated through nginx, then read 6 times through nginx and once
// directly on each instance: every read shows the new title, also on instances that did not handle
// the update.
func (c *lbCluster) testCacheInvalidation(t *testing.T) {
	token := c.register(t, "Cache")
	created := lbRequest{base: c.nginxURL, token: token, body: lbQuery(
		`mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id title } } }`,
		map[string]any{"input": map[string]any{"title": "before the update"}})}.do(t)
	okData(t, "createTask", created)
	id := created.str("createTask", "task", "id")

	read := func(base, reqID string) string {
		a := lbRequest{base: base, token: token, requestID: reqID, body: lbQuery(lbTaskQuery, map[string]any{"id": id})}.do(t)
		okData(t, reqID, a)
		return a.str("task", "title")
	}
	hits := func() []float64 {
		out := make([]float64, len(c.instances))
		for i, inst := range c.instances {
			out[i] = inst.metric(t, "taskgraph_cache_requests_total", `result="hit"`)
		}
		return out
	}
	hitsBefore := hits()
	var warm []string
	for i := range 6 {
		rid := fmt.Sprintf("cache-warm-%d", i)
		warm = append(warm, rid)
		if title := read(c.nginxURL, rid); title != "before the update" {
			t.Fatalf("%s: title %q before the update", rid, title)
		}
	}
	warmServed := c.servedBy(t, warm...)
	hitsAfter := hits()
	var hitInstances int
	for i := range c.instances {
		if hitsAfter[i] > hitsBefore[i] {
			hitInstances++
		}
	}
	if hitInstances < 2 {
		t.Errorf("cache hits grew on %d instances (before %v, after %v): the reads did not come from a shared cache on several instances",
			hitInstances, hitsBefore, hitsAfter)
	}

	upd := lbRequest{base: c.nginxURL, token: token, requestID: "cache-update", body: lbQuery(
		`mutation($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { task { title version } } }`,
		map[string]any{"id": id, "input": map[string]any{"title": "after the update"}})}.do(t)
	okData(t, "updateTask", upd)
	writer := c.servedBy(t, "cache-update")["cache-update"]

	var after []string
	for i := range 6 {
		rid := fmt.Sprintf("cache-read-%d", i)
		after = append(after, rid)
		if title := read(c.nginxURL, rid); title != "after the update" {
			t.Errorf("%s through nginx after the update: title %q, want the new one", rid, title)
		}
	}
	for i, inst := range c.instances {
		if title := read(inst.base, fmt.Sprintf("cache-direct-%d", i+1)); title != "after the update" {
			t.Errorf("%s directly after the update (which %s handled): title %q, want the new one",
				inst.name, c.instances[writer].name, title)
		}
	}
	t.Logf("warm reads served by %v (cache hits per instance %v -> %v); update by instance %d; reads after by %v",
		warmServed, hitsBefore, hitsAfter, writer+1, c.servedBy(t, after...))
}

// ---------------------------------------------------------------------------------------------------
// (4) Shared persisted queries
// ---------------------------------------------------------------------------------------------------

// testPersistedQueries: an APQ hash unknown everywhere is registered on instance 1 directly; the
// hash alone then runs on instance 2 and 3 directly and through nginx.
func (c *lbCluster) testPersistedQueries(t *testing.T) {
	doc := fmt.Sprintf(`query PersistedProbe%d { apiVersion }`, time.Now().UnixNano())
	sum := sha256.Sum256([]byte(doc))
	hash := hex.EncodeToString(sum[:])
	ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
	hashOnly := map[string]any{"extensions": ext}

	if a := (lbRequest{base: c.nginxURL, body: hashOnly}).do(t); a.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Fatalf("hash before registration: %d %s, want PERSISTED_QUERY_NOT_FOUND", a.Status, a.Body)
	}
	reg := lbRequest{base: c.instances[0].base, body: map[string]any{"query": doc, "extensions": ext}}.do(t)
	okData(t, "registering the document on "+c.instances[0].name, reg)

	check := func(where, base, reqID string) {
		a := lbRequest{base: base, requestID: reqID, body: hashOnly}.do(t)
		if a.Status != http.StatusOK || len(a.Doc.Errors) > 0 || a.str("apiVersion") == "" {
			t.Errorf("hash only on %s: %d %s, want the data", where, a.Status, a.Body)
		}
	}
	for _, inst := range c.instances[1:] {
		check(inst.name+" directly", inst.base, "")
	}
	var ids []string
	for i := range 3 {
		id := fmt.Sprintf("apq-%d", i)
		ids = append(ids, id)
		check("nginx", c.nginxURL, id)
	}
	t.Logf("hash-only requests through nginx served by instance: %v", c.servedBy(t, ids...))
}

// ---------------------------------------------------------------------------------------------------
// (5) X-Forwarded-For
// ---------------------------------------------------------------------------------------------------

// lbClientFrom returns a client whose connections come from the loopback address src.
func lbClientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// testForwardedFor: the instances trust X-Forwarded-For from nginx (TRUSTED_PROXIES=127.0.0.1/32),
// so the anonymous budget (RATE_LIMIT_ANON_POINTS_PER_HOUR=5) is per real client address. To have a
// client address that is not nginx's own, the clients connect from 127.0.0.2 and 127.0.0.3 (loopback,
// to nginx on 127.0.0.1). nginx appends the address it sees to whatever X-Forwarded-For the client
// sent, and the server reads the header from the right up to the first untrusted address, so:
//
//   - client A (127.0.0.2) sends 6 queries, each with a different forged X-Forwarded-For (a single
//     address, a chain, garbage): all are charged to 127.0.0.2 (cost.remaining 4, 3, 2, 1, 0) and
//     the 6th is 429: forging the header does not buy a fresh budget;
//   - client B (127.0.0.3) then still has its full budget (remaining 4): the address nginx forwards
//     is believed, otherwise both would share nginx's 127.0.0.1 and B would be refused.
//
// Not asserted, by design: a client connecting from 127.0.0.1 itself is indistinguishable from nginx
// and its forged header would be believed; TRUSTED_PROXIES must only name the proxies' addresses.
func (c *lbCluster) testForwardedFor(t *testing.T) {
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}).
			Dial("tcp", strings.TrimPrefix(c.nginxURL, "http://"))
		if err != nil {
			t.Skipf("cannot connect from %s to nginx on loopback (%v): no second client address to test with", src, err)
		}
		conn.Close()
	}
	a, b := lbClientFrom("127.0.0.2"), lbClientFrom("127.0.0.3")
	defer a.CloseIdleConnections()
	defer b.CloseIdleConnections()
	forged := []string{"203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3", "10.0.0.1", "unknown", "203.0.113.99"}
	var ids []string
	for i, xff := range forged {
		id := fmt.Sprintf("xff-a-%d", i+1)
		ids = append(ids, id)
		ans := lbRequest{client: a, base: c.nginxURL, requestID: id, xff: xff, body: lbQuery(`query Anonymous { apiVersion }`, nil)}.do(t)
		if i < 5 {
			okData(t, fmt.Sprintf("client A query %d (X-Forwarded-For %q)", i+1, xff), ans)
			if got := ans.remaining(); got != 4-i {
				t.Errorf("client A query %d with X-Forwarded-For %q: cost.remaining %d, want %d (charged to 127.0.0.2, not to the forged address)",
					i+1, xff, got, 4-i)
			}
			continue
		}
		if ans.Status != http.StatusTooManyRequests || ans.code() != "RATE_LIMITED" {
			t.Errorf("client A query 6 with a new forged X-Forwarded-For %q: %d %s, want 429 RATE_LIMITED (the forged address must not get its own budget)",
				xff, ans.Status, ans.Body)
		}
	}
	ans := lbRequest{client: b, base: c.nginxURL, requestID: "xff-b-1", body: lbQuery(`query Anonymous { apiVersion }`, nil)}.do(t)
	okData(t, "client B (127.0.0.3) after client A spent its budget", ans)
	if got := ans.remaining(); got != 4 {
		t.Errorf("client B: cost.remaining %d, want 4 (its own budget, keyed by the address nginx forwards)", got)
	}
	t.Logf("client A's queries served by instance: %v", c.servedBy(t, ids...))
}
