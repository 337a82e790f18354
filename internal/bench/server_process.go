package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Time limits for the server process.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// serverProcess is a server under test (Taskgraph or the peer), started as its own process so that
// its CPU time and memory can be read.
type serverProcess struct {
	name   string // for messages: "server", "PostGraphile"
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:port
	stderr *tailBuffer
	exited chan struct{}
	err    error // set when exited is closed
	ready  func(*http.Client, string) bool
}

// readyz is Taskgraph's readiness check: GET /readyz answers 200.
func readyz(client *http.Client, url string) bool {
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startServer starts the server in mode m on a free loopback port and waits until /readyz answers.
func startServer(ctx context.Context, c Config, m mode) (*serverProcess, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	command := c.ServerCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the taskgraph executable: %w", err)
		}
		command = []string{exe, "serve"}
	}
	cmd := exec.Command(command[0], command[1:]...)
	// The server inherits only the Go runtime's knobs and what a process needs to run. Everything
	// Taskgraph reads is set explicitly, so a developer's shell cannot change what is measured.
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range serverSettings(c, m, addr) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, c.ServerEnv...)
	slices.Sort(cmd.Env)
	return startProcess(ctx, "server", cmd, "http://"+addr, readyz)
}

// startProcess starts cmd, a server that will listen at url, and waits until ready says it answers.
func startProcess(ctx context.Context, name string, cmd *exec.Cmd, url string, ready func(*http.Client, string) bool) (*serverProcess, error) {
	p := &serverProcess{name: name, cmd: cmd, url: url, stderr: &tailBuffer{max: 16 << 10}, exited: make(chan struct{}), ready: ready}
	// Should the benchmark die without stopping it (SIGKILL, a crash), the kernel sends the server
	// SIGTERM, so no server outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", name, cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx); err != nil {
		_ = p.stop()
		return nil, err
	}
	return p, nil
}

// freeLoopbackAddr finds a free TCP port on 127.0.0.1. (The port could in principle be taken before
// the server binds it; the server would then exit with "address in use" and the run fails loudly.)
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (p *serverProcess) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if p.ready(client, p.url) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v): %s", p.name, p.err, p.stderr.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s", p.name, readyTimeout, p.stderr.String())
		}
	}
}

// stop sends SIGTERM (the server drains and exits) and waits; after stopTimeout it kills.
func (p *serverProcess) stop() error {
	select {
	case <-p.exited:
		return p.exitError()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
		return p.exitError()
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, stopTimeout)
	}
}

func (p *serverProcess) exitError() error {
	if p.err != nil {
		return fmt.Errorf("%s exited with %v: %s", p.name, p.err, p.stderr.String())
	}
	return nil
}

// resetPeakRSS makes the kernel forget the process's peak resident set ("5" > clear_refs), so the
// next peak read belongs to one scenario.
func (p *serverProcess) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS returns the process's peak resident set in bytes (VmHWM in /proc/<pid>/status).
func (p *serverProcess) peakRSS() (int64, error) {
	return procStatusBytes(p.cmd.Process.Pid, "VmHWM")
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// tailBuffer keeps the last max bytes written to it (the server's log, for error messages).
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(b)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.buf.String())
}
