package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy"
	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	"github.com/urfave/cli/v2"
)

func manageFlags(extra ...cli.Flag) []cli.Flag {
	fs := clusterFlags()
	fs = append(fs, str("deployer", "only this kind: job, tfjob, pytorchjob, serving, kserve (default: all)", "d"))
	return append(fs, extra...)
}

func drivers(c *cli.Context) ([]workload.Driver, error) {
	v, err := versions(c)
	if err != nil {
		return nil, err
	}
	var kinds []string
	if k := c.String("deployer"); k != "" {
		kinds = []string{k}
	}
	ds, err := deploy.Drivers(kinds, v)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return ds, nil
}

func outputFlag() cli.Flag { return strDef("output", "text", "text or json", "o") }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func listCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the workloads fairing launched (by their fairing-deployer label)",
		Flags: manageFlags(outputFlag(),
			str("selector", "extra label selector, e.g. fairing-id=abc", "l"),
			boolean("all-namespaces", "list in every namespace", "A")),
		Action: func(c *cli.Context) error {
			cl, err := clients(c)
			if err != nil {
				return usageErr("%v", err)
			}
			ds, err := drivers(c)
			if err != nil {
				return err
			}
			ns := cl.Namespace
			if c.Bool("all-namespaces") {
				ns = ""
			}
			items, err := deploy.List(c.Context, cl, ns, ds, c.String("selector"))
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if c.String("output") == "json" {
				if items == nil {
					items = []deploy.Item{}
				}
				return writeJSON(stdout, items)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tSTATE\tAGE\tID")
			for _, it := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Namespace, it.Kind, it.Name, it.Phase, age(it.Created), it.ID)
			}
			return tw.Flush()
		},
	}
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func statusCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the state of a workload and its pods",
		ArgsUsage: "NAME",
		Flags:     manageFlags(outputFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("status takes one workload name")
			}
			cl, err := clients(c)
			if err != nil {
				return usageErr("%v", err)
			}
			ds, err := drivers(c)
			if err != nil {
				return err
			}
			it, err := deploy.Status(c.Context, cl, cl.Namespace, c.Args().First(), ds)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if c.String("output") == "json" {
				return writeJSON(stdout, it)
			}
			fmt.Fprintf(stdout, "%s/%s in namespace %s: %s", it.Kind, it.Name, it.Namespace, it.Phase)
			if it.Reason != "" {
				fmt.Fprintf(stdout, " (%s)", it.Reason)
			}
			if it.Message != "" {
				fmt.Fprintf(stdout, ": %s", strings.Join(strings.Fields(it.Message), " "))
			}
			fmt.Fprintln(stdout)
			if it.URL != "" {
				fmt.Fprintf(stdout, "url: %s\n", it.URL)
			}
			for _, p := range it.Pods {
				fmt.Fprintf(stdout, "  pod %s: %s\n", p.Name, p.Phase)
				for _, pr := range p.Problems {
					fmt.Fprintf(stdout, "    %s\n", pr.String())
				}
			}
			return nil
		},
	}
}

func logsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the logs of a workload's pods, each line prefixed by its pod",
		ArgsUsage: "NAME",
		Flags: manageFlags(
			boolean("follow", "follow the logs until the workload ends", "f"),
			boolean("all", "every container of every pod, not only the main ones")),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("logs takes one workload name")
			}
			cl, err := clients(c)
			if err != nil {
				return usageErr("%v", err)
			}
			ds, err := drivers(c)
			if err != nil {
				return err
			}
			mode := follow.LogsMain
			if c.Bool("all") {
				mode = follow.LogsAll
			}
			if err := deploy.Logs(c.Context, cl, cl.Namespace, c.Args().First(), ds, mode, c.Bool("follow"), stdout); err != nil {
				return &exitError{code: 2, err: err}
			}
			return nil
		},
	}
}

func deleteCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete workloads fairing launched, by name or label selector",
		ArgsUsage: "[NAME...]",
		Flags:     manageFlags(str("selector", "label selector, e.g. fairing-id=abc", "l")),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 && c.String("selector") == "" {
				return usageErr("delete needs workload names or --selector")
			}
			cl, err := clients(c)
			if err != nil {
				return usageErr("%v", err)
			}
			ds, err := drivers(c)
			if err != nil {
				return err
			}
			items, err := deploy.Delete(c.Context, cl, cl.Namespace, c.Args().Slice(), c.String("selector"), ds, stdout)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if len(items) == 0 {
				fmt.Fprintln(stderr, "nothing matched")
			}
			return nil
		},
	}
}
