// Command fairing-submit launches a built image as a Kubernetes workload (Job, TFJob, PyTorchJob,
// Deployment+Service, KServe InferenceService) or a Vertex AI CustomJob, follows it and exits with
// its result: 0 on success, the failed container's exit code (or 1) on failure, 2 when it could
// not be launched. Every flag can also be set with a FAIRING_* environment variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries an exit code through urfave/cli without it printing or exiting.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, intersperse(app, args))
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "fairing-submit:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "fairing-submit:", err)
	return 2
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "fairing-submit",
		Usage: "launch a built image on Kubernetes (or Vertex AI), follow it, and exit with its result",
		Description: `Exit codes: 0 success; the failed container's exit code (or 1) when the workload failed;
2 when it could not be launched (bad input, missing CRD, RBAC, missing namespace).
Every flag also reads a FAIRING_* environment variable (shown in each flag's help).`,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideVersion:            true,
		UseShortOptionHandling: true,
		ExitErrHandler:         func(*cli.Context, error) {}, // run() prints and exits
		Commands: []*cli.Command{
			runCommand(stdout, stderr),
			listCommand(stdout, stderr),
			statusCommand(stdout, stderr),
			logsCommand(stdout, stderr),
			deleteCommand(stdout, stderr),
		},
	}
}

// intersperse lets flags follow the workload names (fairing-submit status NAME -o json), as with
// kubectl: urfave/cli stops parsing flags at the first argument, so the names are moved after the
// flags. The run command is left alone: what follows its "--" is the container's command.
func intersperse(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil || cmd.Name == "run" {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, names []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			names = append(names, rest[i+1:]...)
			i = len(rest)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			n := strings.TrimLeft(a, "-")
			if !strings.Contains(n, "=") && takesValue[n] && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
		default:
			names = append(names, a)
		}
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(names) > 0 {
		out = append(append(out, "--"), names...)
	}
	return out
}
