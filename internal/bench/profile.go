package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/taskgraph/taskgraph/db"
)

// profilePage serves the page scenario from an in-process server (the real handler from
// server.Build behind a real listener on 127.0.0.1) under load and records a CPU profile of the
// whole process into path. The separate server process has no pprof endpoint, and adding one is not
// the benchmark's to do.
func profilePage(ctx context.Context, c Config, m mode, users []*benchUser, path string) (Profile, error) {
	prof := Profile{Mode: string(m), Title: m.title(), Path: path}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return prof, fmt.Errorf("profile directory: %w", err)
	}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: c.DBMaxConns})
	if err != nil {
		return prof, err
	}
	defer pool.Close()
	app, err := buildApp(c, m, pool)
	if err != nil {
		return prof, err
	}
	defer app.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return prof, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: app.Handler, ReadHeaderTimeout: 5 * time.Second}
	// Goroutines inherit profiler labels from the one that starts them, so every sample of a server
	// connection, resolver or dataloader is labelled side=server, and every sample of a client or
	// its connections side=load generator.
	go pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) { _ = srv.Serve(ln) })
	defer srv.Close()

	client := httpClient(c.Concurrency, c.Gzip)
	defer client.CloseIdleConnections()
	sc := scenarioByName(ScenarioPage, c.DeepOffset)
	op := graphqlOperation(client, "http://"+ln.Addr().String()+"/graphql", users, sc, c.Concurrency)
	if err := probe(ctx, op); err != nil {
		return prof, err
	}
	f, err := os.Create(path)
	if err != nil {
		return prof, fmt.Errorf("create profile: %w", err)
	}
	defer f.Close()
	var (
		res      loadResult
		before   cpuSample
		errStart error
	)
	pprof.Do(ctx, pprof.Labels("side", "load generator"), func(ctx context.Context) {
		// Warm up outside the profile (connections, caches), then profile the measured part.
		runLoad(ctx, c.Concurrency, 0, c.Warmup, op)
		if errStart = pprof.StartCPUProfile(f); errStart != nil {
			return
		}
		before, _ = sampleCPU(os.Getpid())
		res = runLoad(ctx, c.Concurrency, 0, c.Duration, op)
		pprof.StopCPUProfile()
	})
	if errStart != nil {
		return prof, fmt.Errorf("start CPU profile: %w", errStart)
	}
	if after, err := sampleCPU(os.Getpid()); err == nil {
		prof.MachineCPU = machineBusy(before, after)
		prof.ProcessCPU = float64(procCPU(before, after)) / float64(after.at.Sub(before.at))
	}
	if err := f.Close(); err != nil {
		return prof, fmt.Errorf("write profile: %w", err)
	}
	prof.Result = newResult(sc, m, res)
	prof.Summary = summarizeProfile(ctx, path)
	return prof, nil
}

// summarizeProfile renders the profile with `go tool pprof`, or says how to when Go is not installed.
// The views: how the samples split between server and load generator (unlabelled samples are the
// runtime's own goroutines, mostly the garbage collector's background workers), and where the
// server's goroutines spend their CPU time, cumulative and flat.
func summarizeProfile(ctx context.Context, path string) string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Sprintf("(go is not on PATH; read the profile with: go tool pprof -top %s)", path)
	}
	const serverSide = "-tagfocus=side=server"
	views := []struct {
		title string
		args  []string
	}{
		{"Samples by side:", []string{"-tags"}},
		{"Server side, cumulative, top 40:", []string{"-top", "-cum", "-nodecount=40", serverSide}},
		{"Server side, flat, top 25:", []string{"-top", "-nodecount=25", serverSide}},
	}
	var b strings.Builder
	for _, v := range views {
		args := append([]string{"tool", "pprof"}, v.args...)
		args = append(args, path)
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(cctx, goBin, args...).Output()
		cancel()
		if err != nil {
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				out = append(out, exitErr.Stderr...)
			}
			fmt.Fprintf(&b, "%s\n(go tool pprof failed: %v)\n%s\n\n", v.title, err, out)
			continue
		}
		fmt.Fprintf(&b, "%s\n%s\n\n", v.title, trimPprofHeader(string(out)))
	}
	return b.String()
}

// trimPprofHeader drops pprof's "File:", "Type:" and "Time:" lines, which repeat for every view.
func trimPprofHeader(out string) string {
	var keep []string
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(line, "File: ") || strings.HasPrefix(line, "Type: ") || strings.HasPrefix(line, "Time: ") ||
			strings.HasPrefix(line, "Build ID: ") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}
