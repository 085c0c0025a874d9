package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (sysconf CLK_TCK).
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// processCPU returns the user plus system CPU time that process pid (all its
// threads) has used so far, from fields 14 and 15 of /proc/<pid>/stat. Its
// resolution is one clock tick, 10ms on most systems.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[14-3], 10, 64)
	stime, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(float64(utime+stime) / clockTicks * float64(time.Second)), nil
}

// meter brackets the measured part of a workload: wall time, and the CPU time of
// the target's proxy process when there is one.
type meter struct {
	pid          int // 0: no proxy process
	cpu0, cpu1   time.Duration
	wall0, wall1 time.Time
	err          error
}

func (m *meter) start() {
	if m.pid != 0 {
		m.cpu0, m.err = processCPU(m.pid)
	}
	m.wall0 = time.Now()
}

func (m *meter) stop() {
	m.wall1 = time.Now()
	if m.pid != 0 && m.err == nil {
		m.cpu1, m.err = processCPU(m.pid)
	}
}

func (m *meter) elapsed() time.Duration { return m.wall1.Sub(m.wall0) }

func (m *meter) cpu() time.Duration { return m.cpu1 - m.cpu0 }
