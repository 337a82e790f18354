package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgraph/taskgraph/internal/observe"
)

type fakeDB struct{ err error }

func (f fakeDB) Ping(context.Context) error { return f.err }

// /readyz needs both the database and running job workers; /healthz needs neither.
func TestWorkerReadiness(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	reg := prometheus.NewRegistry()
	m, err := observe.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		db      error
		running bool
		ready   int
		body    string
	}{
		{nil, true, http.StatusOK, `"status":"ready"`},
		{errors.New("down"), true, http.StatusServiceUnavailable, `"database":"unreachable"`},
		{nil, false, http.StatusServiceUnavailable, `"jobs":"stopped"`},
	} {
		h := workerHandler(fakeDB{tc.db}, func() bool { return tc.running }, m, reg)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.ready || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("db %v, running %v: /readyz %d %s; want %d with %s", tc.db, tc.running, rec.Code, rec.Body, tc.ready, tc.body)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("db %v, running %v: /healthz %d", tc.db, tc.running, rec.Code)
		}
	}
}
