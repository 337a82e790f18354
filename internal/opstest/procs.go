package opstest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process of /proc: its parent and process group.
type proc struct{ pid, ppid, pgid int }

func processes() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so cut at the last ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" { // a zombie is dead already, only not yet reaped
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, proc{pid: pid, ppid: ppid, pgid: pgid})
	}
	return out
}

// processTree is every live process in one of the process groups or under one of the roots,
// descendants included (PostgreSQL backends make process groups of their own, so a group alone
// would miss them).
func processTree(pgids, roots []int) []int {
	all := processes()
	in := map[int]bool{}
	for _, p := range all {
		for _, g := range pgids {
			if g > 0 && p.pgid == g {
				in[p.pid] = true
			}
		}
	}
	for _, r := range roots {
		if r > 0 && processAlive(r) {
			in[r] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, p := range all {
			if !in[p.pid] && in[p.ppid] {
				in[p.pid] = true
				grew = true
			}
		}
	}
	out := make([]int, 0, len(in))
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

// killTree stops every process of the tree first (so that none restarts another meanwhile: the
// keeper supervises its services), then kills them all with SIGKILL, and waits (up to 10 s) until
// they are gone; a process forked while the tree was being listed is caught by the next round.
// It returns every pid it killed.
func killTree(pgids, roots []int) []int {
	var killed []int
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; round < 5; round++ {
		pids := processTree(pgids, roots)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range pids {
			for processAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		killed = append(killed, pids...)
		roots = nil // the postmasters are in the tree already; their pids must not be reused by mistake
	}
	return killed
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// postmasterPID reads the postmaster's pid from a data directory (0 if it is not running).
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}
