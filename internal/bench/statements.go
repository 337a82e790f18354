package bench

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/server"
)

// statementCounter is a pgx tracer that counts every statement sent, batched ones included (the same
// rule as testsupport.StatementCounter, which lives in a test-only package), and remembers the
// distinct statement texts, so the ceiling's copies can be checked against what the server sends.
type statementCounter struct {
	n     atomic.Int64
	mu    sync.Mutex
	texts map[string]bool
}

func (c *statementCounter) count() int64 { return c.n.Load() }

func (c *statementCounter) saw(sql string) {
	c.n.Add(1)
	sql = strings.Join(strings.Fields(sql), " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.texts == nil {
		c.texts = make(map[string]bool)
	}
	c.texts[sql] = true
}

// takeTexts returns the distinct statements seen since the last call, sorted, and forgets them.
func (c *statementCounter) takeTexts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Sorted(maps.Keys(c.texts))
	c.texts = nil
	return out
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.saw(d.SQL)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.saw(d.SQL)
}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// statementPass is the result of counting one scenario's statements.
type statementPass struct {
	perRequest float64
	appHits    float64  // the cache's own hit ratio over the pass (-1 without a cache)
	texts      []string // the distinct statements sent, whitespace collapsed, sorted
}

// statementPasser is the server built in this process on a pool whose tracer counts statements. The
// separate server process cannot be instrumented without changing it, and the count does not depend
// on which process runs the same code.
type statementPasser struct {
	counter *statementCounter
	pool    *pgxpool.Pool
	app     *server.App
}

func newStatementPasser(ctx context.Context, c Config, m mode) (*statementPasser, error) {
	counter := &statementCounter{}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: c.DBMaxConns, Tracer: counter})
	if err != nil {
		return nil, err
	}
	app, err := buildApp(c, m, pool, server.Observability{})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &statementPasser{counter: counter, pool: pool, app: app}, nil
}

func (p *statementPasser) close() {
	p.app.Close()
	p.pool.Close()
}

// count sends scenario sc's requests one at a time and counts their statements. It runs right after
// the scenario's load, so a cache holds what the load put there (the working set of the task
// scenario is thousands of tasks: a pass on a cold cache would count a fill for nearly every
// request), and a few uncounted requests come first.
func (p *statementPasser) count(c Config, users []*benchUser, sc scenario) (statementPass, error) {
	// Under load, client w acts as users[w % len(users)], so only the first `active` users ever send
	// requests; the pass sends as the same users.
	active := min(c.Concurrency, len(users))
	rng := rand.New(rand.NewPCG(42, 0x5747))
	send := func(i int) error {
		u := users[i%active]
		if _, err := inProcess(p.app.Handler, u.token, sc.next(u, rng).body(u)); err != nil {
			return fmt.Errorf("statement pass, %s: %w", sc.name, err)
		}
		return nil
	}
	for i := range max(20, active) {
		if err := send(i); err != nil {
			return statementPass{}, err
		}
	}
	before, hits := p.counter.count(), p.app.Cache.Stats()
	p.counter.takeTexts()
	for i := range c.StmtSamples {
		if err := send(i); err != nil {
			return statementPass{}, err
		}
	}
	pass := statementPass{perRequest: float64(p.counter.count()-before) / float64(c.StmtSamples), appHits: -1,
		texts: p.counter.takeTexts()}
	if p.app.Cache != nil {
		after := p.app.Cache.Stats()
		if n := (after.Hits - hits.Hits) + (after.Misses - hits.Misses); n > 0 {
			pass.appHits = float64(after.Hits-hits.Hits) / float64(n)
		}
	}
	return pass, nil
}
