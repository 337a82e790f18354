package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/gqllimits"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/ratelimit"
	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

// throttleState lets code deep in the GraphQL executor turn the HTTP answer into 429 with
// Retry-After, although gqlgen's transport picks the status itself.
type throttleState struct {
	mu         sync.Mutex
	retryAfter time.Duration
	status     int         // another status for a refusal made inside the executor (0: gqlgen's)
	header     http.Header // headers the answer carries (with status, or alone)
	// peek reports the client's budget headers for answers that never reached the budget check
	// (refused before execution): nil without rate limits.
	peek func() http.Header
}

type throttleKey struct{}

// markThrottled records that the request was refused for rate; the response becomes 429.
func markThrottled(ctx context.Context, retryAfter time.Duration) {
	if st, ok := ctx.Value(throttleKey{}).(*throttleState); ok {
		st.mu.Lock()
		st.retryAfter = max(retryAfter, time.Second)
		st.mu.Unlock()
	}
}

// markStatus makes the response carry status (and header: value) instead of the one gqlgen picks, for
// refusals made inside the executor that HTTP has a better answer for. RATE_LIMITED still wins.
func markStatus(ctx context.Context, status int, header, value string) {
	if st, ok := ctx.Value(throttleKey{}).(*throttleState); ok {
		st.mu.Lock()
		st.status = status
		if header != "" {
			if st.header == nil {
				st.header = http.Header{}
			}
			st.header.Set(header, value)
		}
		st.mu.Unlock()
	}
}

// markHeader adds a header to the HTTP answer of an operation decided inside the executor (ignored on
// transports without headers, such as a websocket).
func markHeader(ctx context.Context, header, value string) {
	if st, ok := ctx.Value(throttleKey{}).(*throttleState); ok {
		st.mu.Lock()
		if st.header == nil {
			st.header = http.Header{}
		}
		st.header.Set(header, value)
		st.mu.Unlock()
	}
}

// withThrottleStatus installs the state and rewrites the status line when it is set.
func withThrottleStatus(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &throttleState{}
		tw := &throttleWriter{ResponseWriter: w, st: st}
		next.ServeHTTP(tw, r.WithContext(context.WithValue(r.Context(), throttleKey{}, st)))
	})
}

type throttleWriter struct {
	http.ResponseWriter
	st          *throttleState
	wroteHeader bool
}

func (t *throttleWriter) WriteHeader(code int) {
	if t.wroteHeader {
		return
	}
	t.wroteHeader = true
	if mt, _, _ := parseMediaType(t.Header().Get("Content-Type")); mt == mediaEventStream {
		// An event stream reports its refusals as events (GraphQL over SSE): the status stays 200.
		t.ResponseWriter.WriteHeader(code)
		return
	}
	t.st.mu.Lock()
	ra, status, header, peek := t.st.retryAfter, t.st.status, t.st.header, t.st.peek
	t.st.mu.Unlock()
	if header.Get(headerRateLimit) == "" && peek != nil {
		for k, vs := range peek() {
			t.Header()[k] = vs
		}
	}
	for k, vs := range header {
		t.Header()[k] = vs
	}
	if status != 0 {
		code = status
	}
	if ra > 0 {
		t.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.Seconds()))))
		code = http.StatusTooManyRequests
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *throttleWriter) Write(b []byte) (int, error) {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	return t.ResponseWriter.Write(b)
}

func (t *throttleWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// costBudget charges each operation's cost points to its client (the signed-in user, else the client
// IP) and refuses the operation once the hourly budget is spent (GitHub's model). The budget state is
// reported in the "cost" response extension and in the RateLimit / RateLimit-Policy headers. A dry run
// (extensions: {"cost": {"dryRun": true}}) answers the cost, the budget and whether the operation would
// be admitted, without executing it and without spending anything.
type costBudget struct {
	limiter    ratelimit.Limiter
	user, anon ratelimit.Limit
	metrics    *observe.Metrics
}

var (
	_ graphql.HandlerExtension        = costBudget{}
	_ graphql.OperationContextMutator = costBudget{}
	_ graphql.OperationInterceptor    = costBudget{}
)

func (costBudget) ExtensionName() string                   { return "CostBudget" }
func (costBudget) Validate(graphql.ExecutableSchema) error { return nil }

// client names the budget the request of ctx is charged to.
func (b costBudget) client(ctx context.Context) (string, ratelimit.Limit) {
	if v, ok := auth.ActorFrom(ctx); ok {
		return "cost:user:" + v.UserID.String(), b.user
	}
	return "cost:ip:" + rateLimitKey(ctx), b.anon
}

// dryRun reports whether the request asks for extensions.cost.dryRun.
func dryRun(oc *graphql.OperationContext) bool {
	c, _ := oc.Extensions["cost"].(map[string]any)
	v, _ := c["dryRun"].(bool)
	return v
}

func (b costBudget) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	cost, ok := gqllimits.CostFrom(ctx)
	if !ok || dryRun(oc) || b.limiter == nil {
		return nil // a dry run spends nothing: InterceptOperation answers it
	}
	key, limit := b.client(ctx)
	res, err := b.limiter.Allow(ctx, key, limit, cost.Points)
	if err != nil {
		return nil // only invalid arguments reach here; never fail a request over its budget bookkeeping
	}
	gqllimits.AddCostInfo(ctx, "limit", limit.Burst)
	gqllimits.AddCostInfo(ctx, "remaining", res.Remaining)
	gqllimits.AddCostInfo(ctx, "resetAt", time.Now().Add(res.ResetAfter).UTC().Format(time.RFC3339))
	for k, v := range rateLimitHeaders(limit, res) {
		markHeader(ctx, k, v[0])
	}
	if !res.Allowed {
		b.metrics.RateLimited(observe.LimitCost)
		markThrottled(ctx, res.RetryAfter)
		msg := fmt.Sprintf("query budget spent: this query costs %d points and %d remain; retry in %s",
			cost.Points, res.Remaining, res.RetryAfter.Round(time.Second))
		return refusalOf(apperr.Throttled(res.RetryAfter, "%s", msg))
	}
	return nil
}

// InterceptOperation answers a dry run: the cost extension with the budget as it stands, and
// wouldBeAdmitted; data is null and nothing runs.
func (b costBudget) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	cost, ok := gqllimits.CostFrom(ctx)
	if !ok || !dryRun(oc) {
		return next(ctx)
	}
	info := map[string]any{"dryRun": true, "requestedNodes": cost.Nodes, "points": cost.Points, "wouldBeAdmitted": true}
	if b.limiter != nil {
		key, limit := b.client(ctx)
		res, err := b.limiter.Peek(ctx, key, limit)
		if err != nil {
			return refuseOperation(apperr.Internal, "internal error: the budget cannot be read; retry")
		}
		for k, v := range rateLimitHeaders(limit, res) {
			markHeader(ctx, k, v[0])
		}
		info["limit"] = limit.Burst
		info["remaining"] = res.Remaining
		info["resetAt"] = time.Now().Add(res.ResetAfter).UTC().Format(time.RFC3339)
		info["wouldBeAdmitted"] = cost.Points <= res.Remaining
	}
	return graphql.OneShot(&graphql.Response{Data: json.RawMessage("null"),
		Extensions: map[string]any{"apiVersion": schemaversion.Version, "cost": info}})
}

// peekHeaders returns the rate-limit headers of the client of ctx without spending (for answers
// refused before the budget check).
func (b costBudget) peekHeaders(ctx context.Context) http.Header {
	key, limit := b.client(ctx)
	res, err := b.limiter.Peek(ctx, key, limit)
	if err != nil {
		return nil
	}
	return rateLimitHeaders(limit, res)
}

// withBudgetHeaders makes every answer below it carry the client's rate-limit headers, also when the
// request never reached the budget check (a document refused before execution). Inside auth: the
// budget is the signed-in user's.
func withBudgetHeaders(b *costBudget, next http.Handler) http.Handler {
	if b == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, ok := r.Context().Value(throttleKey{}).(*throttleState); ok {
			ctx := r.Context()
			st.mu.Lock()
			st.peek = func() http.Header { return b.peekHeaders(ctx) }
			st.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// signInLimiter throttles every attempt that verifies a password or reveals whether an email is
// registered (login, register, changePassword, deleteMe, updateMe's email) per client IP and, more
// tightly, per subject (the email tried or the signed-in user), so guessing passwords for one
// account or spraying many accounts from one address is slow.
type signInLimiter struct {
	limiter       ratelimit.Limiter
	perIP, perKey ratelimit.Limit
	metrics       *observe.Metrics
}

func newSignInLimiter(l ratelimit.Limiter, perMinute int, m *observe.Metrics) *signInLimiter {
	perEmail := max(1, perMinute/2)
	return &signInLimiter{
		limiter: l,
		metrics: m,
		perIP:   ratelimit.PerMinute(perMinute, perMinute),
		perKey:  ratelimit.PerMinute(perEmail, perEmail),
	}
}

// Allow implements accounts.SignInLimiter.
func (s *signInLimiter) Allow(ctx context.Context, subject string) error {
	checks := []struct {
		key   string
		limit ratelimit.Limit
	}{
		{"signin:ip:" + rateLimitKey(ctx), s.perIP},
		{"signin:" + subject, s.perKey},
	}
	for _, c := range checks {
		res, err := s.limiter.Allow(ctx, c.key, c.limit, 1)
		if err == nil && !res.Allowed {
			s.metrics.RateLimited(observe.LimitSignIn)
			return apperr.Throttled(res.RetryAfter, "too many sign-in attempts; retry in %s", res.RetryAfter.Round(time.Second))
		}
	}
	return nil
}
