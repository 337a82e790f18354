package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
)

// statementCounter is a pgx tracer that counts every statement sent, batched ones included (the same
// rule as testsupport.StatementCounter, which lives in a test-only package).
type statementCounter struct {
	n atomic.Int64
}

func (c *statementCounter) count() int64 { return c.n.Load() }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *statementCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.n.Add(1)
}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// statementPass is the result of counting one scenario's statements.
type statementPass struct {
	perRequest float64
	appHits    float64 // the cache's own hit ratio over the pass (-1 without a cache)
}

// countStatements builds the server in this process on a pool whose tracer counts statements, and
// sends each scenario's requests one at a time (after uncounted ones, so a cache is as warm as under
// load). The separate server process cannot be instrumented without changing it, and the
// count does not depend on which process runs the same code.
func countStatements(ctx context.Context, c Config, m mode, users []*benchUser, scenarios []scenario) (map[string]statementPass, error) {
	counter := &statementCounter{}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: c.DBMaxConns, Tracer: counter})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	app, err := buildApp(c, m, pool)
	if err != nil {
		return nil, err
	}
	defer app.Close()

	// Under load, client w acts as users[w % len(users)], so only the first `active` users ever send
	// requests (and have cached entries); the pass sends as the same users, each at least once before
	// counting.
	active := min(c.Concurrency, len(users))
	out := make(map[string]statementPass, len(scenarios))
	for _, sc := range scenarios {
		rng := rand.New(rand.NewPCG(42, 0x5747))
		send := func(i int) error {
			u := users[i%active]
			_, err := inProcess(app.Handler, u.token, sc.next(u, rng).body(u))
			return err
		}
		for i := range max(20, active) {
			if err := send(i); err != nil {
				return nil, fmt.Errorf("statement pass, %s: %w", sc.name, err)
			}
		}
		before, hits := counter.count(), app.Cache.Stats()
		for i := range c.StmtSamples {
			if err := send(i); err != nil {
				return nil, fmt.Errorf("statement pass, %s: %w", sc.name, err)
			}
		}
		pass := statementPass{perRequest: float64(counter.count()-before) / float64(c.StmtSamples), appHits: -1}
		if app.Cache != nil {
			after := app.Cache.Stats()
			if n := (after.Hits - hits.Hits) + (after.Misses - hits.Misses); n > 0 {
				pass.appHits = float64(after.Hits-hits.Hits) / float64(n)
			}
		}
		out[sc.name] = pass
	}
	return out, nil
}
