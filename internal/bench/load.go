package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// requestTimeout bounds one request of the load, HTTP or SQL.
const requestTimeout = 10 * time.Second

// operation performs one request for client w and reports which kind of request it sent and
// whether it failed.
type operation func(ctx context.Context, w int, rng *rand.Rand) (stepKind, error)

// loadResult is what one measured run produced.
type loadResult struct {
	requests  int64           // requests that started inside the measured window
	errors    int64           // of those, how many failed
	firstErr  string          // the first failure, for the report
	elapsed   time.Duration   // from the start of the window until the last measured request ended
	latencies []time.Duration // sorted, one per measured request
	total     int64           // every request, warmup included

	// byKind holds the same latencies split by the kind of request, each sorted; only the kinds
	// that were sent have an entry.
	byKind map[stepKind][]time.Duration
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile returns the nearest-rank percentile p (0..100) of the sorted latencies.
func (r loadResult) percentile(p float64) time.Duration { return percentile(r.latencies, p) }

// percentile returns the nearest-rank percentile p (0..100) of sorted; 0 when it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return sorted[min(max(i, 0), n-1)]
}

// latenciesByKind splits latencies by kinds[i], the kind of request latencies[i] measured, and sorts
// each kind's share. Kinds without a request have no entry.
func latenciesByKind(latencies []time.Duration, kinds []stepKind) map[stepKind][]time.Duration {
	out := map[stepKind][]time.Duration{}
	for i, d := range latencies {
		out[kinds[i]] = append(out[kinds[i]], d)
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

// clientResult is one client's share of a run.
type clientResult struct {
	latencies []time.Duration
	kinds     []stepKind // kinds[i] is the kind of request latencies[i] measured
	errors    int64
	firstErr  error
	lastEnd   time.Time
	total     int64
}

// runLoad runs op from concurrency clients, back to back, for warmup and then duration. Requests
// that start in the measured window count (their latency is recorded even if they end after it);
// requests still running at the end are awaited, never cut off. Each client draws from its own
// random sequence, seeded by its number, so two runs of the same scenario make the same choices.
func runLoad(ctx context.Context, concurrency int, warmup, duration time.Duration, op operation) loadResult {
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	results := make([]clientResult, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			res := &results[w]
			res.latencies = make([]time.Duration, 0, 4096)
			res.kinds = make([]stepKind, 0, 4096)
			rng := rand.New(rand.NewPCG(uint64(w)+1, 0x7a5c9))
			for ctx.Err() == nil {
				began := time.Now()
				if !began.Before(end) {
					break
				}
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				kind, err := op(rctx, w, rng)
				cancel()
				done := time.Now()
				res.total++
				if began.Before(measureFrom) {
					continue
				}
				res.latencies = append(res.latencies, done.Sub(began))
				res.kinds = append(res.kinds, kind)
				res.lastEnd = done
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
				}
			}
		})
	}
	wg.Wait()

	var out loadResult
	var kinds []stepKind
	lastEnd := measureFrom
	for _, r := range results {
		out.latencies = append(out.latencies, r.latencies...)
		kinds = append(kinds, r.kinds...)
		out.errors += r.errors
		out.total += r.total
		if r.firstErr != nil && out.firstErr == "" {
			out.firstErr = r.firstErr.Error()
		}
		if r.lastEnd.After(lastEnd) {
			lastEnd = r.lastEnd
		}
	}
	out.byKind = latenciesByKind(out.latencies, kinds) // before sorting: kinds follows the clients' order
	slices.Sort(out.latencies)
	out.requests = int64(len(out.latencies))
	out.elapsed = lastEnd.Sub(measureFrom)
	if err := ctx.Err(); err != nil && out.firstErr == "" {
		out.firstErr = "interrupted: " + err.Error()
	}
	return out
}

// httpClient is the client of the benchmark's setup and checks: keep-alive connections, one per
// concurrent client. The measured load goes through a loadClient.
func httpClient(concurrency int, gzip bool) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			MaxConnsPerHost:     concurrency,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  !gzip,
		},
	}
}

// graphqlOperation sends scenario sc's requests to the server through lc, client w signed in as bench
// user w mod len(users).
func graphqlOperation(lc *loadClient, users []*benchUser, sc scenario, concurrency int) operation {
	return httpOperation(lc, users, sc, concurrency, step.body, true)
}

// requestBody is what a client sends for step s as user u.
type requestBody func(s step, u *benchUser) []byte

// httpOperation sends scenario sc's requests, with bodies from body, through lc (to a GraphQL
// endpoint); client w acts as bench user w mod len(users), with that user's access token when
// signedIn.
func httpOperation(lc *loadClient, users []*benchUser, sc scenario, concurrency int, body requestBody, signedIn bool) operation {
	// One reusable response buffer per client keeps the load generator's own garbage (and so its
	// share of the two cores) small.
	bufs := make([]bytes.Buffer, concurrency)
	return func(ctx context.Context, w int, rng *rand.Rand) (stepKind, error) {
		u := users[w%len(users)]
		s := sc.next(u, rng)
		token := ""
		if signedIn {
			token = u.token
		}
		status, err := lc.post(ctx, w, token, body(s, u), &bufs[w])
		if err != nil {
			return s.kind, err
		}
		return s.kind, checkAnswer(status, bufs[w].Bytes())
	}
}

// sendGraphQL posts one GraphQL request, with the access token unless it is empty, and checks the
// answer, read into buf.
func sendGraphQL(ctx context.Context, client *http.Client, url, token string, body []byte, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	return checkAnswer(resp.StatusCode, buf.Bytes())
}

// checkAnswer accepts HTTP 200 with data and without errors. It looks at bytes rather than decoding:
// no task title or name the benchmark writes contains the text `"errors"`, and decoding every answer
// would take the load generator's CPU from the server it shares the machine with.
func checkAnswer(status int, body []byte) error {
	switch {
	case status != http.StatusOK:
		return fmt.Errorf("HTTP %d: %.300s", status, body)
	case bytes.Contains(body, []byte(`"errors"`)):
		return fmt.Errorf("GraphQL errors: %.300s", body)
	case !bytes.HasPrefix(body, []byte(`{"data":{`)):
		return errors.New("answer has no data: " + fmt.Sprintf("%.300s", body))
	}
	return nil
}
