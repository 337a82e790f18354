package server

import (
	"context"
	"fmt"
	"math"
	"mime"
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
)

// throttleState lets code deep in the GraphQL executor turn the HTTP answer into 429 with
// Retry-After, although gqlgen's transport picks the status itself.
type throttleState struct {
	mu         sync.Mutex
	retryAfter time.Duration
	status     int         // another status for a refusal made inside the executor (0: gqlgen's)
	header     http.Header // headers that go with status
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
	if mt, _, _ := mime.ParseMediaType(t.Header().Get("Content-Type")); mt == mediaEventStream {
		// An event stream reports its refusals as events (GraphQL over SSE): the status stays 200.
		t.ResponseWriter.WriteHeader(code)
		return
	}
	t.st.mu.Lock()
	ra, status, header := t.st.retryAfter, t.st.status, t.st.header
	t.st.mu.Unlock()
	if status != 0 {
		for k, vs := range header {
			t.Header()[k] = vs
		}
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
// reported in the "cost" response extension.
type costBudget struct {
	limiter    ratelimit.Limiter
	user, anon ratelimit.Limit
	metrics    *observe.Metrics
}

var (
	_ graphql.HandlerExtension        = costBudget{}
	_ graphql.OperationContextMutator = costBudget{}
)

func (costBudget) ExtensionName() string                   { return "CostBudget" }
func (costBudget) Validate(graphql.ExecutableSchema) error { return nil }

func (b costBudget) MutateOperationContext(ctx context.Context, _ *graphql.OperationContext) *gqlerror.Error {
	cost, ok := gqllimits.CostFrom(ctx)
	if !ok {
		return nil
	}
	key, limit := "ip:"+rateLimitKey(ctx), b.anon
	if v, ok := auth.ActorFrom(ctx); ok {
		key, limit = "user:"+v.UserID.String(), b.user
	}
	res, err := b.limiter.Allow(ctx, "cost:"+key, limit, cost.Points)
	if err != nil {
		return nil // only invalid arguments reach here; never fail a request over its budget bookkeeping
	}
	gqllimits.AddCostInfo(ctx, "limit", limit.Burst)
	gqllimits.AddCostInfo(ctx, "remaining", res.Remaining)
	gqllimits.AddCostInfo(ctx, "resetAt", time.Now().Add(res.ResetAfter).UTC().Format(time.RFC3339))
	if !res.Allowed {
		b.metrics.RateLimited(observe.LimitCost)
		markThrottled(ctx, res.RetryAfter)
		msg := fmt.Sprintf("query budget spent: this query costs %d points and %d remain; retry in %s",
			cost.Points, res.Remaining, res.RetryAfter.Round(time.Second))
		return refusalOf(apperr.Throttled(res.RetryAfter, "%s", msg))
	}
	return nil
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
