package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc (USER_HZ, 100 on every mainstream Linux build).
const userHZ = 100

// cpuSample is a reading of the machine's and (optionally) one process's CPU time.
type cpuSample struct {
	busy, total int64 // machine, in ticks: busy = everything but idle and iowait
	proc        int64 // the process's user+system time, in ticks; -1 when not read
	at          time.Time
	// ours is the CPU time, by pid, of the processes the benchmark keeps busy: itself, the server,
	// Redis, PostgreSQL's own processes and its backends serving the benchmark's database. What the
	// machine spent beyond them is other people's work, which skews every number.
	ours map[int]int64
	// db is the CPU time, in ticks by pid, of the PostgreSQL backends serving the benchmark's database
	// (read with ours): where a server's SQL costs.
	db map[int]int64
}

// sampleCPU reads /proc/stat and, when pid > 0, /proc/<pid>/stat; with dbName, also the CPU time of
// every process the benchmark keeps busy (see cpuSample.ours).
func sampleCPU(pid int, dbName string) (cpuSample, error) {
	s := cpuSample{proc: -1, at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	for i, f := range fields[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/stat: %w", err)
		}
		s.total += n
		if i != 3 && i != 4 {
			s.busy += n
		}
	}
	if pid > 0 {
		if s.proc, err = procTicks(pid); err != nil {
			return s, err
		}
	}
	if dbName != "" {
		s.ours, s.db = ourProcesses(os.Getpid(), pid, dbName)
	}
	return s, nil
}

// procTicks is a process's user+system CPU time in ticks, from /proc/<pid>/stat.
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process stat: %w", err)
	}
	// The command name may contain spaces; fields are counted after its closing parenthesis, where
	// field 3 (state) comes first: utime is field 14, stime field 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return utime + stime, nil
}

// ourProcesses returns the CPU ticks of this process, the server, Redis, and PostgreSQL's
// processes except backends of other databases (PostgreSQL names each backend
// "postgres: <cluster>: <user> <database> <client> <state>"), and separately the ticks of the
// backends serving dbName.
func ourProcesses(self, server int, dbName string) (ours, db map[int]int64) {
	out := map[int]int64{}
	db = map[int]int64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out, db
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ours := pid == self || pid == server
		if !ours {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			switch strings.TrimSpace(string(comm)) {
			case "redis-server":
				ours = true
			case "postgres":
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				title := string(cmdline)
				backend := strings.Contains(title, " "+dbName+" ")
				ours = !strings.Contains(title, "(") || backend
				if backend {
					if t, err := procTicks(pid); err == nil {
						db[pid] = t
					}
				}
			}
		}
		if ours {
			if t, err := procTicks(pid); err == nil {
				out[pid] = t
			}
		}
	}
	return out, db
}

// dbCPU is the CPU time the benchmark database's backends spent between two samples. A backend that
// started in between counts from zero; one that ended takes its time with it, so this is a lower bound
// (the servers' pools keep their connections open).
func dbCPU(a, b cpuSample) time.Duration {
	var ticks int64
	for pid, t := range b.db {
		ticks += t - a.db[pid]
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// othersBusy is the share of all cores' time spent by processes that are not the benchmark's
// between two samples (-1 if unknown). A process of ours that started in between counts from zero.
func othersBusy(a, b cpuSample) float64 {
	if b.total <= a.total || b.ours == nil {
		return -1
	}
	var ours int64
	for pid, t := range b.ours {
		ours += t - a.ours[pid]
	}
	return max(float64(b.busy-a.busy-ours), 0) / float64(b.total-a.total)
}

// machineBusy is the share of all cores' time spent busy between two samples (-1 if unknown).
func machineBusy(a, b cpuSample) float64 {
	if b.total <= a.total {
		return -1
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// procCPU is the process's CPU time between two samples.
func procCPU(a, b cpuSample) time.Duration {
	if a.proc < 0 || b.proc < 0 {
		return 0
	}
	return time.Duration(b.proc-a.proc) * time.Second / userHZ
}
