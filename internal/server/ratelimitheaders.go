package server

// The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): the client's current quota
// and the policy it is counted under.
const (
	headerRateLimit       = "RateLimit"
	headerRateLimitPolicy = "RateLimit-Policy"
)
