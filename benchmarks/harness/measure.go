package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Step is one process run: its wall time, CPU time and peak resident memory (as wait4 reports
// it: the largest of the process and the children it waited for).
type Step struct {
	Name     string  `json:"name"`
	WallMs   float64 `json:"wall_ms"`
	UserMs   float64 `json:"user_ms"`
	SysMs    float64 `json:"sys_ms"`
	MaxRSSKB int64   `json:"maxrss_kb"`
}

// runStep runs argv and measures it. stdout is returned; stderr is kept for the error.
func runStep(ctx context.Context, name string, env []string, argv ...string) (Step, []byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	s := Step{Name: name, WallMs: ms(wall)}
	if ps := cmd.ProcessState; ps != nil {
		s.UserMs, s.SysMs = ms(ps.UserTime()), ms(ps.SystemTime())
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSSKB = ru.Maxrss // kilobytes on Linux
		}
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return s, out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return s, out.Bytes(), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// loadAvg reads the 1-minute load average; other agents share the machine, so every scenario
// records it before and after.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
