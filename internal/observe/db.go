package observe

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PGXTracer returns a pgx tracer (pgx.QueryTracer and pgx.BatchTracer) that times every statement
// into taskgraph_db_statement_duration_seconds by SQL verb. Set it as the pool's
// ConnConfig.Tracer (db.PoolOptions.Tracer), through ChainTracers to keep another tracer. On a nil
// *Metrics it returns nil, which pgx and ChainTracers treat as no tracer.
func (m *Metrics) PGXTracer() pgx.QueryTracer {
	if m == nil {
		return nil
	}
	return statementTracer{m: m}
}

type statementTracer struct{ m *Metrics }

var (
	_ pgx.QueryTracer = statementTracer{}
	_ pgx.BatchTracer = statementTracer{}
)

type queryStartKey struct{}

type queryStart struct {
	at   time.Time
	verb string
}

func (t statementTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, queryStartKey{}, queryStart{at: time.Now(), verb: sqlVerb(data.SQL)})
}

func (t statementTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if s, ok := ctx.Value(queryStartKey{}).(queryStart); ok {
		t.m.statementDuration.WithLabelValues(s.verb).Observe(time.Since(s.at).Seconds())
	}
}

type batchStartKey struct{}

func (t statementTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, batchStartKey{}, time.Now())
}

// TraceBatchQuery times one statement of a batch from when pgx began reading its result (or, when
// pgx does not say, from the start of the batch).
func (t statementTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	start := data.ReadStartTime
	if start.IsZero() {
		start, _ = ctx.Value(batchStartKey{}).(time.Time)
	}
	if start.IsZero() {
		return
	}
	t.m.statementDuration.WithLabelValues(sqlVerb(data.SQL)).Observe(time.Since(start).Seconds())
}

func (t statementTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// sqlVerb is the statement label of sql: its first keyword (after blanks, comments and opening
// parentheses) if one of select, insert, update, delete or with, else "other".
func sqlVerb(sql string) string {
	i := 0
	for i < len(sql) {
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := indexFrom(sql, "*/", i+2)
			if end < 0 {
				return labelOther
			}
			i = end + 2
		default:
			j := i
			for j < len(sql) && j-i < 6 && isLetter(sql[j]) {
				j++
			}
			if j < len(sql) && (isLetter(sql[j]) || sql[j] >= '0' && sql[j] <= '9' || sql[j] == '_' || sql[j] >= 0x80) {
				return labelOther // a longer word than any verb we name
			}
			switch word := lowerASCII(sql[i:j]); word {
			case "select", "insert", "update", "delete", "with":
				return word
			}
			return labelOther
		}
	}
	return labelOther
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func indexFrom(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// ChainTracers returns one tracer that calls each of ts in order. Query, batch, copy-from, prepare
// and connect callbacks, and pgxpool's acquire and release callbacks, reach every element that
// implements them; nil elements are skipped. With no non-nil element it returns nil; with one, that
// element.
func ChainTracers(ts ...pgx.QueryTracer) pgx.QueryTracer {
	var c tracerChain
	for _, t := range ts {
		if t != nil {
			c = append(c, t)
		}
	}
	switch len(c) {
	case 0:
		return nil
	case 1:
		return c[0]
	}
	return c
}

type tracerChain []pgx.QueryTracer

var (
	_ pgx.QueryTracer       = tracerChain{}
	_ pgx.BatchTracer       = tracerChain{}
	_ pgx.CopyFromTracer    = tracerChain{}
	_ pgx.PrepareTracer     = tracerChain{}
	_ pgx.ConnectTracer     = tracerChain{}
	_ pgxpool.AcquireTracer = tracerChain{}
	_ pgxpool.ReleaseTracer = tracerChain{}
)

func (c tracerChain) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	for _, t := range c {
		ctx = t.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

func (c tracerChain) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	for _, t := range c {
		t.TraceQueryEnd(ctx, conn, data)
	}
}

func (c tracerChain) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	for _, t := range c {
		if bt, ok := t.(pgx.BatchTracer); ok {
			ctx = bt.TraceBatchStart(ctx, conn, data)
		}
	}
	return ctx
}

func (c tracerChain) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	for _, t := range c {
		if bt, ok := t.(pgx.BatchTracer); ok {
			bt.TraceBatchQuery(ctx, conn, data)
		}
	}
}

func (c tracerChain) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	for _, t := range c {
		if bt, ok := t.(pgx.BatchTracer); ok {
			bt.TraceBatchEnd(ctx, conn, data)
		}
	}
}

func (c tracerChain) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	for _, t := range c {
		if ct, ok := t.(pgx.CopyFromTracer); ok {
			ctx = ct.TraceCopyFromStart(ctx, conn, data)
		}
	}
	return ctx
}

func (c tracerChain) TraceCopyFromEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	for _, t := range c {
		if ct, ok := t.(pgx.CopyFromTracer); ok {
			ct.TraceCopyFromEnd(ctx, conn, data)
		}
	}
}

func (c tracerChain) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	for _, t := range c {
		if pt, ok := t.(pgx.PrepareTracer); ok {
			ctx = pt.TracePrepareStart(ctx, conn, data)
		}
	}
	return ctx
}

func (c tracerChain) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	for _, t := range c {
		if pt, ok := t.(pgx.PrepareTracer); ok {
			pt.TracePrepareEnd(ctx, conn, data)
		}
	}
}

func (c tracerChain) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	for _, t := range c {
		if ct, ok := t.(pgx.ConnectTracer); ok {
			ctx = ct.TraceConnectStart(ctx, data)
		}
	}
	return ctx
}

func (c tracerChain) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	for _, t := range c {
		if ct, ok := t.(pgx.ConnectTracer); ok {
			ct.TraceConnectEnd(ctx, data)
		}
	}
}

func (c tracerChain) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireStartData) context.Context {
	for _, t := range c {
		if at, ok := t.(pgxpool.AcquireTracer); ok {
			ctx = at.TraceAcquireStart(ctx, pool, data)
		}
	}
	return ctx
}

func (c tracerChain) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	for _, t := range c {
		if at, ok := t.(pgxpool.AcquireTracer); ok {
			at.TraceAcquireEnd(ctx, pool, data)
		}
	}
}

func (c tracerChain) TraceRelease(pool *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	for _, t := range c {
		if rt, ok := t.(pgxpool.ReleaseTracer); ok {
			rt.TraceRelease(pool, data)
		}
	}
}

// WatchPool reports pool's connections (acquired, idle, total, max) under the label pool=name
// ("primary", "replica-1"), read from pool.Stat() at scrape time. Watching a name again replaces the
// pool; a nil pool stops watching the name.
func (m *Metrics) WatchPool(name string, pool *pgxpool.Pool) {
	if m == nil {
		return
	}
	m.pools.watch(name, pool)
}

// poolCollector is the custom collector behind taskgraph_db_pool_connections.
type poolCollector struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

func newPoolCollector() *poolCollector {
	return &poolCollector{
		desc: prometheus.NewDesc("taskgraph_db_pool_connections",
			"PostgreSQL pool connections by pool and state (acquired, idle, total, max).",
			[]string{"pool", "state"}, nil),
		pools: make(map[string]*pgxpool.Pool),
	}
}

func (p *poolCollector) watch(name string, pool *pgxpool.Pool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pool == nil {
		delete(p.pools, name)
		return
	}
	p.pools[name] = pool
}

func (p *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *poolCollector) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	pools := maps.Clone(p.pools)
	p.mu.Unlock()
	for name, pool := range pools {
		st := pool.Stat()
		for _, s := range []struct {
			state string
			n     int32
		}{
			{"acquired", st.AcquiredConns()},
			{"idle", st.IdleConns()},
			{"total", st.TotalConns()},
			{"max", st.MaxConns()},
		} {
			ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(s.n), name, s.state)
		}
	}
}
