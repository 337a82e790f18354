package observe

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// newTestMetrics returns Metrics registered on a fresh registry.
func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// sample is one gathered series: a counter's or gauge's value, or a histogram's sample count.
type sample struct {
	labels map[string]string
	value  float64
}

// series returns every series of the metric called name.
func series(t *testing.T, g prometheus.Gatherer, name string) []sample {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []sample
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			s.value = metricValue(f.GetType(), m)
			out = append(out, s)
		}
	}
	return out
}

func metricValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// value returns the series of name whose labels include want (0 and false when there is none).
func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	for _, s := range series(t, g, name) {
		if matches(s.labels, want) {
			return s.value, true
		}
	}
	return 0, false
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// mustValue is value, failing the test when the series is missing.
func mustValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := value(t, g, name, want)
	if !ok {
		t.Fatalf("no series %s%v; have %v", name, want, series(t, g, name))
	}
	return v
}
