package server

import (
	"fmt"
	"math"
	"net/http"

	"github.com/taskgraph/taskgraph/internal/ratelimit"
)

// The IETF RateLimit header fields, in the structured-field form of draft-ietf-httpapi-ratelimit-headers
// (-09 and later): RateLimit-Policy names the quota ("cost": q points per w seconds) and RateLimit says
// where the client stands in it (r points remaining, t seconds until the budget is full again).
const (
	headerRateLimit       = "RateLimit"
	headerRateLimitPolicy = "RateLimit-Policy"
	// rateLimitPolicyName names the hourly cost budget in both fields.
	rateLimitPolicyName = "cost"
)

// rateLimitHeaders renders a budget state as the two fields.
func rateLimitHeaders(l ratelimit.Limit, r ratelimit.Result) http.Header {
	h := http.Header{}
	h.Set(headerRateLimitPolicy, fmt.Sprintf("%q;q=%d;w=%d", rateLimitPolicyName, l.Burst, int(l.Period.Seconds())))
	h.Set(headerRateLimit, fmt.Sprintf("%q;r=%d;t=%d", rateLimitPolicyName, max(0, r.Remaining), int(math.Ceil(r.ResetAfter.Seconds()))))
	return h
}
