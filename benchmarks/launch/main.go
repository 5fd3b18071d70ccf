// Command launch runs a program and reports how much it cost: wall time, CPU time and peak
// resident memory, as JSON in a file. The benchmark harness starts every tool through it.
//
//	launch RESULT-FILE PROGRAM ARGS...
//
// It exists because Linux records, at exec, the peak RSS of the memory the new program
// replaces, and Go starts children sharing the parent's memory until exec: a tool started
// straight from the (large) harness would report the harness's peak as its own. This program
// is tiny, so what a tool inherits from it is a couple of MB.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// step matches the harness's Step.
type step struct {
	WallMs   float64 `json:"wall_ms"`
	UserMs   float64 `json:"user_ms"`
	SysMs    float64 `json:"sys_ms"`
	MaxRSSKB int64   `json:"maxrss_kb"`
}

// cmdLaunch runs argv, waits, and writes its measurement (wall, CPU, peak RSS of the process
// and the children it waited for) as JSON to resultFile; it exits with argv's exit code.
func main() {
	args := os.Args[1:]
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: launch RESULT-FILE ARGV...")
		os.Exit(2)
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	s := step{WallMs: ms(time.Since(start))}
	if ps := cmd.ProcessState; ps != nil {
		s.UserMs, s.SysMs = ms(ps.UserTime()), ms(ps.SystemTime())
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSSKB = ru.Maxrss // kilobytes on Linux
		}
	}
	b, _ := json.Marshal(s)
	if werr := os.WriteFile(args[0], b, 0o644); werr != nil {
		fmt.Fprintf(os.Stderr, "launch: %v\n", werr)
		os.Exit(125)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(max(1, ee.ExitCode()))
		}
		fmt.Fprintf(os.Stderr, "launch: %v\n", err)
		os.Exit(127)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
