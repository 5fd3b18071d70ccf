package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	// Aside: shown beside the run but not part of its total (the in-cluster style's
	// push-context, which happens on the laptop before the build pod starts).
	Aside bool `json:"aside,omitempty"`
}

// runStep runs argv through the launcher (benchmarks/launch, beside this binary) and measures it. stdout is returned; stderr is
// kept for the error.
//
// Why a launcher: Linux records, at exec, the peak RSS of the memory the new program replaces,
// and Go starts children with vfork semantics (the child shares the parent's memory until
// exec). So a child of this process would report at least this process's own peak (hundreds of
// MB after measuring the limits) as its Maxrss. The launcher is small and fresh: what the tool
// inherits from it is a few MB.
func runStep(ctx context.Context, name string, env []string, argv ...string) (Step, []byte, error) {
	return runStepStderr(ctx, name, env, "", argv...)
}

// runStepStderr is runStep that also writes the tool's stderr to stderrFile (when not empty).
func runStepStderr(ctx context.Context, name string, env []string, stderrFile string, argv ...string) (Step, []byte, error) {
	self, err := os.Executable()
	if err != nil {
		return Step{Name: name}, nil, err
	}
	launcher := filepath.Join(filepath.Dir(self), "launch")
	res, err := os.CreateTemp("", "bench-step-*.json")
	if err != nil {
		return Step{Name: name}, nil, err
	}
	res.Close()
	defer os.Remove(res.Name())
	cmd := exec.CommandContext(ctx, launcher, append([]string{res.Name()}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// The launcher and the tool under it get a process group of their own, killed as one when
	// the run is cancelled or times out: no tool outlives the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if stderrFile != "" {
		os.WriteFile(stderrFile, errb.Bytes(), 0o644)
	}
	s := Step{Name: name}
	if b, rerr := os.ReadFile(res.Name()); rerr == nil && len(b) > 0 {
		if jerr := json.Unmarshal(b, &s); jerr != nil && err == nil {
			err = fmt.Errorf("read the launcher's measurement: %w", jerr)
		}
		s.Name = name
	} else if err == nil {
		err = fmt.Errorf("the launcher measured nothing")
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
