// Command fairing-builder builds container images from code without a Docker daemon: it
// appends only the layers that changed onto a base image and pushes only what the registry
// lacks.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/fairing-dev/fairing/pkg/memlimit"
)

// The soft memory limit: the live heap plus memHeadroom (plus the runtime's own memory), never
// below memFloor. A/B on cold builds, against 64 and 24 MiB when the runtime's memory was not
// counted: large 79 -> 64 MB peak RSS, medium 54 -> 46 MB, same CPU time; 4 MiB of headroom
// cost a large cold build a quarter more CPU.
const (
	memFloor    = 24 << 20
	memHeadroom = 8 << 20
)

func main() {
	// Compression makes garbage fast; left alone, the heap doubles what the build holds before
	// the collector runs. The soft limit follows the live heap with a fixed headroom instead
	// (GOMEMLIMIT overrides it).
	defer memlimit.Follow(os.Getenv, memFloor, memHeadroom)()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.App{
		Name:  "fairing-builder",
		Usage: "build container images from code, incrementally, without a Docker daemon",
		Description: "fairing-builder turns a folder of code into an image: it splits the files into layers by how\n" +
			"often they change, rebuilds only the layers whose files changed, appends them onto a base image\n" +
			"(reading only the base's manifest and config) and uploads only the blobs the registry lacks.\n" +
			"Every flag can also be set with a FAIRING_* environment variable (shown with each flag).",
		// Values such as --env A=1,2 must not be split on commas: repeat the flag instead.
		DisableSliceFlagSeparator: true,
		Commands:                  []*cli.Command{buildCommand(), pushContextCommand(), demoCommand(), versionCommand()},
	}
	if f := os.Getenv("FAIRING_CPUPROFILE"); f != "" {
		// For performance work: a CPU profile of the whole run, for go tool pprof.
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	err := app.RunContext(ctx, os.Args)
	pprof.StopCPUProfile()
	if f := os.Getenv("FAIRING_MEMPROFILE"); f != "" {
		// The heap as of the last collection during the run (no GC forced: that would show
		// what is left at exit, which is nothing).
		if out, err := os.Create(f); err == nil {
			pprof.Lookup("heap").WriteTo(out, 0)
			out.Close()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C or SIGTERM: whatever failed on the way out failed because of it.
			fmt.Fprintln(os.Stderr, "fairing-builder: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "fairing-builder: %v\n", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, version)
			return nil
		},
	}
}
