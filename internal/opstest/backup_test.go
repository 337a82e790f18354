package opstest_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/taskgraph/taskgraph/internal/opstest"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// testArchiveTimeout replaces deploy's 60 s so that the recovery point after a lost primary can be
// measured within the test; the recovery point scales with it (docs/operations.md).
const testArchiveTimeout = 2 * time.Second

// TestBackupPointInTimeRecovery backs up a primary with deploy/pgbackrest (full, then differential,
// WAL archived continuously), then restores it twice into new clusters: to a recorded time (what
// was written before is there, what was written after is not, and Taskgraph serves the restored
// data normally), and to the end of the archive after the primary is lost (the recovery point).
func TestBackupPointInTimeRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: backs up and restores PostgreSQL clusters with pgBackRest")
	}
	primary := testsupport.NewCluster(t)
	backrest := opstest.NewPgBackRest(t, primary, fmt.Sprintf("archive_timeout = %ds", int(testArchiveTimeout.Seconds())))
	env := testsupport.NewEnvOn(t, primary.Database(t), nil)

	backrest.Backup(t, "full")
	alice := env.Register(t, "Alice")
	var wantA []string
	for i := range 5 {
		wantA = append(wantA, fmt.Sprintf("A%d", i+1))
		createTask(t, alice.Client, wantA[i])
	}
	backrest.Backup(t, "diff")
	for i := 5; i < 7; i++ { // after the differential: the restore replays these from the WAL archive
		wantA = append(wantA, fmt.Sprintf("A%d", i+1))
		createTask(t, alice.Client, wantA[i])
	}
	target := primary.Query(t, "postgres", `SELECT clock_timestamp()::text`)
	bob := env.Register(t, "Bob")
	_, laterRefresh := refresh(t, env, alice.RefreshToken) // rotates Alice's refresh token after the target
	for i := range 3 {
		createTask(t, alice.Client, fmt.Sprintf("B%d", i+1))
	}
	backrest.Run(t, "check")  // switches the WAL segment and waits until it is archived
	backrest.Run(t, "verify") // reads the repository back and checks every file's checksum
	checkMetrics(t, backrest, primary)

	// Restore to the recorded time.
	started := time.Now()
	restored := backrest.Restore(t, "pitr", "--type=time", "--target="+target, "--target-action=promote")
	restored.WaitPrimary(t, time.Minute)
	renv := testsupport.NewEnvOn(t, restored.Database(t), nil)
	aliceThere := &testsupport.Client{Env: renv, Token: alice.Token} // her session from before the backup
	got := allTitles(t, aliceThere)
	rto := time.Since(started)
	if !slices.Equal(got, wantA) {
		t.Fatalf("restored to %s, Alice's tasks are %v, want A only: %v", target, got, wantA)
	}
	res := renv.Anonymous().Do(t, loginMutation, map[string]any{"e": bob.Email, "p": bob.Password})
	if len(res.Errors) == 0 || res.Errors[0].Code() != "UNAUTHENTICATED" {
		t.Fatalf("Bob registered after the target, yet login answers %+v", res)
	}
	res = renv.Anonymous().Do(t, refreshMutation, map[string]any{"t": laterRefresh})
	if len(res.Errors) == 0 || res.Errors[0].Code() != "UNAUTHENTICATED" {
		t.Fatalf("a refresh token issued after the target works on the restored cluster: %+v", res)
	}
	access, _ := refresh(t, renv, alice.RefreshToken) // the one she held at the target
	if got := allTitles(t, &testsupport.Client{Env: renv, Token: access}); !slices.Equal(got, wantA) {
		t.Fatalf("after refreshing her session: %v", got)
	}
	createTask(t, aliceThere, "after restore")
	if n := runReport(t, aliceThere, 30*time.Second); n != 1 {
		t.Errorf("a report job on the restored cluster took %d attempts, want 1", n)
	}
	t.Logf("point-in-time restore: Taskgraph served the restored data %s after the restore started", rto.Round(time.Millisecond))

	// The primary is lost while Alice keeps writing; restore everything the archive has.
	type ack struct {
		title string
		at    time.Time
	}
	var acks []ack
	for i := range 40 {
		title := fmt.Sprintf("C%02d", i+1)
		createTask(t, alice.Client, title)
		acks = append(acks, ack{title, time.Now()})
		time.Sleep(100 * time.Millisecond) // a steady trickle of writes across several archive_timeouts
	}
	primary.Crash(t)
	lostAt := time.Now()
	started = time.Now()
	latest := backrest.Restore(t, "latest")
	latest.WaitPrimary(t, time.Minute)
	lenv := testsupport.NewEnvOn(t, latest.Database(t), nil)
	got = allTitles(t, &testsupport.Client{Env: lenv, Token: alice.Token})
	rtoLatest := time.Since(started)
	for _, w := range append(slices.Clone(wantA), "B1", "B2", "B3") {
		if !slices.Contains(got, w) {
			t.Fatalf("the latest restore lacks %s (archived before the loss): %v", w, got)
		}
	}
	var lastKept ack
	kept := 0
	for _, a := range acks {
		if slices.Contains(got, a.title) {
			kept++
			lastKept = a
		}
	}
	// What survives is a prefix of the writes: the archive has no holes.
	for i, a := range acks {
		if want := i < kept; slices.Contains(got, a.title) != want {
			t.Fatalf("write %s: in the restore %v, want the first %d writes only: %v", a.title, !want, kept, got)
		}
	}
	rpo := acks[len(acks)-1].at.Sub(lastKept.at)
	if kept == 0 {
		rpo = acks[len(acks)-1].at.Sub(acks[0].at)
	}
	if rpo > testArchiveTimeout+3*time.Second {
		t.Errorf("lost %s of acknowledged writes, want at most archive_timeout (%s) and a little", rpo, testArchiveTimeout)
	}
	t.Logf("latest restore after losing the primary at %s: %d of %d trailing writes kept, recovery point %s (archive_timeout %s), served %s after the restore started",
		lostAt.Format(time.TimeOnly), kept, len(acks), rpo.Round(time.Millisecond), testArchiveTimeout, rtoLatest.Round(time.Millisecond))
}

// checkMetrics runs deploy/pgbackrest/pgbackrest-metrics against the primary: it must print valid
// Prometheus text with a fresh full backup and no failed archiving.
func checkMetrics(t *testing.T, backrest *opstest.PgBackRest, primary *testsupport.Cluster) {
	t.Helper()
	script := opstest.RepoPath(t, "deploy/pgbackrest/pgbackrest-metrics")
	psql := opstest.Tool(t, "psql", "postgresql-client")
	cmd := exec.Command("runuser", "-u", "postgres", "--", "sh", script)
	if os.Geteuid() != 0 {
		cmd = exec.Command("sh", script)
	}
	cmd.Dir = primary.Dir()
	cmd.Env = append(os.Environ(), "PGBACKREST_CONFIG="+backrest.Config, "PGHOST="+primary.Dir(),
		fmt.Sprintf("PGPORT=%d", primary.Port), "PGUSER=postgres", "PATH="+dirOf(psql)+":"+dirOf(backrest.Bin)+":/usr/bin:/bin")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pgbackrest-metrics: %v\n%s", err, stderr.String())
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("pgbackrest-metrics printed invalid Prometheus text: %v\n%s", err, out)
	}
	value := func(name string, labels ...string) (float64, bool) {
		f := families[name]
		if f == nil {
			return 0, false
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
		return 0, false
	}
	now := float64(time.Now().Unix())
	for _, kind := range []string{"full", "diff"} {
		v, ok := value("pgbackrest_backup_last_completion_timestamp_seconds", "type", kind)
		if !ok || now-v > 600 || v > now+5 {
			t.Errorf("last %s backup at %v (present %v), want within the last minutes\n%s", kind, v, ok, out)
		}
	}
	if v, ok := value("pgbackrest_stanza_status_code"); !ok || v != 0 {
		t.Errorf("stanza status %v (present %v), want 0\n%s", v, ok, out)
	}
	if v, ok := value("pg_archiver_failed_total"); !ok || v != 0 {
		t.Errorf("failed archiving %v (present %v), want 0\n%s", v, ok, out)
	}
	if v, ok := value("pg_archiver_last_archived_timestamp_seconds"); !ok || now-v > 60 {
		t.Errorf("last archived at %v (present %v), want just now\n%s", v, ok, out)
	}
	if v, ok := value("pg_archiver_pending_bytes"); !ok || v < 0 || v > 16<<20 {
		t.Errorf("archive lag %v bytes (present %v), want at most one segment\n%s", v, ok, out)
	}
	if t.Failed() {
		return
	}
	t.Logf("pgbackrest-metrics: %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | "))
}

func dirOf(p string) string {
	return filepath.Dir(p)
}
