package main

import (
	"strings"

	"github.com/fairing-dev/fairing/pkg/deploy"
	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/validation"
)

// env names the FAIRING_* variable of a flag.
func env(flag string) []string {
	return []string{"FAIRING_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

func str(name, usage string, aliases ...string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Usage: usage, EnvVars: env(name), Aliases: aliases}
}

func strDef(name, value, usage string, aliases ...string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name), Aliases: aliases}
}

func strs(name, usage string, aliases ...string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: env(name), Aliases: aliases}
}

func boolean(name, usage string, aliases ...string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: name, Usage: usage, EnvVars: env(name), Aliases: aliases}
}

func integer(name string, value int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name)}
}

const (
	catCluster  = "Cluster"
	catWorkload = "Workload"
	catPod      = "Pod options"
	catFollow   = "Following and cleanup"
	catTraining = "tfjob / pytorchjob"
	catServing  = "serving"
	catKServe   = "kserve"
	catVertex   = "vertex"
)

func cat(c string, fs ...cli.Flag) []cli.Flag {
	for _, f := range fs {
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Category = c
		case *cli.StringSliceFlag:
			f.Category = c
		case *cli.BoolFlag:
			f.Category = c
		case *cli.IntFlag:
			f.Category = c
		case *cli.Int64Flag:
			f.Category = c
		case *cli.DurationFlag:
			f.Category = c
		}
	}
	return fs
}

// clusterFlags select the cluster, like kubectl.
func clusterFlags() []cli.Flag {
	return cat(catCluster,
		&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)", EnvVars: env("kubeconfig"), TakesFile: true},
		str("context", "kubeconfig context to use"),
		&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, EnvVars: env("namespace"),
			Usage: "namespace (default: the kubeconfig context's, the pod's own in a cluster, else default)",
			Action: func(_ *cli.Context, ns string) error {
				// refused here: the API server would only say that it does not exist. Empty (an
				// exported but empty FAIRING_NAMESPACE) keeps the default, as before.
				if ns == "" {
					return nil
				}
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					return usageErr("--namespace %q is not a valid namespace name: %s", ns, strings.Join(errs, "; "))
				}
				return nil
			}},
		strs("deployer-api", "pin a custom resource API version: training=v1, kserve=v1beta1 (repeatable)"),
	)
}

func clients(c *cli.Context) (*kube.Clients, error) {
	return kube.New(kube.Options{Kubeconfig: c.String("kubeconfig"), Context: c.String("context"), Namespace: c.String("namespace")})
}

func versions(c *cli.Context) (deploy.Versions, error) {
	var v deploy.Versions
	for _, s := range c.StringSlice("deployer-api") {
		k, ver, ok := strings.Cut(s, "=")
		switch {
		case ok && k == "training" && ver != "":
			v.Training = ver
		case ok && k == "kserve" && ver != "":
			v.KServe = ver
		default:
			return v, usageErr("--deployer-api %q: want training=VERSION or kserve=VERSION", s)
		}
	}
	return v, nil
}
