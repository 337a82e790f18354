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
}

// sampleCPU reads /proc/stat and, when pid > 0, /proc/<pid>/stat.
func sampleCPU(pid int) (cpuSample, error) {
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
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return s, fmt.Errorf("read process stat: %w", err)
		}
		// The command name may contain spaces; fields are counted after its closing parenthesis,
		// where field 3 (state) comes first: utime is field 14, stime field 15.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			return s, fmt.Errorf("unexpected /proc/%d/stat", pid)
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("parse /proc/%d/stat", pid)
		}
		s.proc = utime + stime
	}
	return s, nil
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
