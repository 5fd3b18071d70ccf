package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fairing-dev/fairing/pkg/deploy"
	"github.com/fairing-dev/fairing/pkg/deploy/follow"
	"github.com/fairing-dev/fairing/pkg/deploy/pod"
	"github.com/fairing-dev/fairing/pkg/deploy/vertex"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/validation"
)

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func runFlags() []cli.Flag {
	fs := clusterFlags()
	fs = append(fs, cat(catWorkload,
		strDef("deployer", "job", "workload kind: job, tfjob, pytorchjob, serving, kserve, vertex", "d"),
		str("image", "image to run, ideally by digest (name@sha256:...)"),
		&cli.StringFlag{Name: "image-from-file", Usage: "read the image from a file holding name@sha256:... (fairing-builder's --image-name-with-digest-file)", EnvVars: env("image-from-file"), TakesFile: true},
		str("name", "name of the workload (default: generated, fairing-<kind>-xxxxx)"),
		str("id", "value of the fairing-id label that groups this submission's objects (default: random)"),
		strs("command", "command of the container, replacing the image's ENTRYPOINT (also: arguments after --)"),
		strs("args", "arguments of the container, replacing the image's CMD"),
		str("workdir", "working directory of the container"),
		&cli.BoolFlag{Name: "dry-run", Usage: "print the objects (YAML, or JSON with -o json) instead of creating them; needs no cluster", EnvVars: env("dry-run")},
		strDef("output", "text", "result format: text, or json (a JSON result on stdout; logs go to stderr)", "o"),
		&cli.StringFlag{Name: "result-file", Usage: "also write the JSON result to this file (e.g. /dev/termination-log in a pod)", EnvVars: env("result-file"), TakesFile: true},
		boolean("quiet", "print only logs and the final summary", "q"),
	)...)
	fs = append(fs, cat(catPod,
		strs("env", "environment variable NAME=VALUE (repeatable)", "e"),
		strs("env-from-secret", "SECRET (every key becomes a variable) or VAR=SECRET:KEY (repeatable)"),
		str("cpu", "CPU as Kubernetes quantities: Q (request = limit), REQ:LIM, REQ: (request only)"),
		str("memory", "memory, same forms as --cpu (e.g. 2Gi, 1Gi:4Gi)"),
		&cli.Int64Flag{Name: "gpu", Usage: "number of GPUs (limit)", EnvVars: env("gpu")},
		strDef("gpu-vendor", "nvidia", "GPU vendor: nvidia, amd, or an extended resource name"),
		strs("volume", "TYPE:NAME:/mount/path[:subPath], TYPE pvc, secret, configmap or emptydir (repeatable)"),
		strs("node-selector", "node label KEY=VALUE the pods must run on (repeatable)"),
		strs("toleration", "toleration KEY[=VALUE][:EFFECT[:SECONDS]] or * (repeatable)"),
		str("service-account", "service account of the pods"),
		strs("image-pull-secret", "image pull secret name (repeatable)"),
		strs("annotation", "pod annotation KEY=VALUE (repeatable)"),
		strs("label", "label KEY=VALUE on the objects and pods (repeatable)"),
		strs("credentials", "credentials preset gcp, aws or docker, optionally =SECRET (default secrets user-gcp-sa, aws-secret, docker-secret)"),
		&cli.StringFlag{Name: "pod-template", Usage: "YAML pod template (Pod, PodTemplate or pod template spec) merged underneath the options", EnvVars: env("pod-template"), TakesFile: true},
		str("istio-sidecar", "set sidecar.istio.io/inject to true or false (default: false for job, tfjob and pytorchjob, untouched otherwise)"),
	)...)
	fs = append(fs, cat(catFollow,
		&cli.DurationFlag{Name: "timeout", Usage: "give up after this long (Jobs and training jobs also get it as activeDeadlineSeconds); 0: none (serving and kserve: 10m)", EnvVars: env("timeout")},
		&cli.DurationFlag{Name: "ttl", Usage: "delete a finished Job or training job this long after it ended (ttlSecondsAfterFinished)", EnvVars: env("ttl")},
		str("cleanup", "delete the workload after following it: never, on-success, always (default: on-success for job, never for the others)"),
		boolean("detach", "return once the workload is created: no following, no cleanup"),
		strDef("logs", "main", "logs to stream: main (the workload's container in its main pods), all, none"),
		&cli.BoolFlag{Name: "fail-fast", Value: true, Usage: "fail as soon as a pod cannot pull its image, crash-loops or cannot be scheduled (turn off on autoscaling clusters)", EnvVars: env("fail-fast")},
	)...)
	fs = append(fs, cat(catWorkload, integer("runs", 1, "job: number of identical pods (parallelism = completions)"))...)
	fs = append(fs, cat(catTraining,
		integer("chief", 0, "tfjob: chief replicas"),
		integer("workers", 0, "tfjob: worker replicas (default 1 without a chief); pytorchjob: worker replicas"),
		integer("ps", 0, "tfjob: parameter servers (GPU limits stripped)"),
		integer("masters", 0, "pytorchjob: master replicas (default and only choice: 1)"),
		str("clean-pod-policy", "runPolicy.cleanPodPolicy: Running (default), All, None"),
	)...)
	fs = append(fs, cat(catServing,
		integer("port", 8080, "serving: Service port; kserve: container port"),
		integer("target-port", 0, "serving: container port (default: --port)"),
		integer("replicas", 1, "serving: replicas; vertex: replica count"),
		strDef("service-type", "ClusterIP", "serving: ClusterIP, NodePort or LoadBalancer"),
		strDef("cluster-domain", "cluster.local", "serving: cluster DNS domain of the printed URL"),
		str("url-path", "serving: path appended to the printed URL (e.g. /predict)"),
		integer("min-ready-seconds", 3, "serving: seconds a pod must stay ready to count as available (so a crashing server is not reported ready)"),
	)...)
	fs = append(fs, cat(catKServe,
		str("model-format", "kserve: model format (sklearn, xgboost, ...) served from --storage-uri instead of the image"),
		str("storage-uri", "kserve: model location (gs://, s3://, pvc://)"),
		&cli.Int64Flag{Name: "canary-traffic-percent", Value: -1, Usage: "kserve: traffic percent for the new revision (0-100)", EnvVars: env("canary-traffic-percent")},
	)...)
	fs = append(fs, cat(catVertex,
		str("vertex-project", "vertex: Google Cloud project"),
		strDef("vertex-region", "us-central1", "vertex: region"),
		str("vertex-endpoint", "vertex: API base URL (default https://REGION-aiplatform.googleapis.com)"),
		strDef("machine-type", "n1-standard-4", "vertex: machine type"),
		str("accelerator-type", "vertex: accelerator type, e.g. NVIDIA_TESLA_T4"),
		integer("accelerator-count", 0, "vertex: accelerators per replica"),
		str("vertex-service-account", "vertex: service account the job runs as"),
		&cli.DurationFlag{Name: "vertex-poll-interval", Value: 15 * time.Second, Usage: "vertex: time between state checks", EnvVars: env("vertex-poll-interval")},
	)...)
	return fs
}

func runCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "launch the image as a workload, follow it, exit with its result",
		ArgsUsage: "[-- COMMAND [ARG...]]",
		Flags:     append(runFlags(), buildFlags()...),
		Action: func(c *cli.Context) error {
			return doRun(c, stdout, stderr)
		},
	}
}

// image returns the image reference from --image or --image-from-file, validated.
func image(c *cli.Context) (string, error) {
	img, file := c.String("image"), c.String("image-from-file")
	if img != "" && file != "" {
		return "", usageErr("--image and --image-from-file exclude each other")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageErr("--image-from-file: %v", err)
		}
		img = strings.TrimSpace(string(b))
		if img == "" {
			return "", usageErr("--image-from-file %s is empty: did the build write it?", file)
		}
		if !strings.Contains(img, "@sha256:") {
			return "", usageErr("--image-from-file %s holds %q, not name@sha256:DIGEST", file, img)
		}
	}
	if img == "" {
		return "", usageErr("no image: pass --image or --image-from-file")
	}
	if _, err := name.ParseReference(img); err != nil {
		return "", usageErr("image %q: %v", img, err)
	}
	return img, nil
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// podOptions turns the pod flags into pod.Options.
func podOptions(c *cli.Context, img string) (pod.Options, error) {
	o := pod.Options{Image: img, WorkingDir: c.String("workdir"), ServiceAccount: c.String("service-account"),
		ImagePullSecrets: c.StringSlice("image-pull-secret")}
	o.Command = c.StringSlice("command")
	if c.Args().Present() {
		if len(o.Command) > 0 {
			return o, usageErr("give the command either with --command or after --, not both")
		}
		o.Command = c.Args().Slice()
	}
	o.Args = c.StringSlice("args")
	var err error
	if o.Env, err = pod.ParseEnv(c.StringSlice("env")); err != nil {
		return o, usageErr("%v", err)
	}
	senv, from, err := pod.ParseEnvFromSecret(c.StringSlice("env-from-secret"))
	if err != nil {
		return o, usageErr("%v", err)
	}
	o.Env, o.EnvFrom = append(o.Env, senv...), from
	if v := c.String("cpu"); v != "" {
		o.Resources.CPURequest, o.Resources.CPULimit = pod.ParseRequestLimit(v)
	}
	if v := c.String("memory"); v != "" {
		o.Resources.MemoryRequest, o.Resources.MemoryLimit = pod.ParseRequestLimit(v)
	}
	o.Resources.GPU, o.Resources.GPUVendor = c.Int64("gpu"), c.String("gpu-vendor")
	if o.Resources.GPU > 0 {
		// checked here too: with --build-in-cluster the pod is only built after the image
		if _, err := pod.GPUResource(o.Resources.GPUVendor); err != nil {
			return o, usageErr("%v", err)
		}
	}
	for _, v := range c.StringSlice("volume") {
		vol, err := pod.ParseVolume(v)
		if err != nil {
			return o, usageErr("%v", err)
		}
		o.Volumes = append(o.Volumes, vol)
	}
	if o.NodeSelector, err = pod.ParseKeyValues("node-selector", c.StringSlice("node-selector"), true); err != nil {
		return o, usageErr("%v", err)
	}
	for _, t := range c.StringSlice("toleration") {
		tol, err := pod.ParseToleration(t)
		if err != nil {
			return o, usageErr("%v", err)
		}
		o.Tolerations = append(o.Tolerations, tol)
	}
	if o.Annotations, err = pod.ParseKeyValues("annotation", c.StringSlice("annotation"), false); err != nil {
		return o, usageErr("%v", err)
	}
	if o.Labels, err = pod.ParseKeyValues("label", c.StringSlice("label"), true); err != nil {
		return o, usageErr("%v", err)
	}
	for k := range o.Labels {
		if k == pod.LabelDeployer || k == pod.LabelID {
			return o, usageErr("--label %s is set by fairing itself (use --id for %s)", k, pod.LabelID)
		}
	}
	for _, s := range c.StringSlice("credentials") {
		cr, err := pod.ParseCredential(s)
		if err != nil {
			return o, usageErr("%v", err)
		}
		o.Credentials = append(o.Credentials, cr)
	}
	for _, s := range o.ImagePullSecrets {
		if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
			return o, usageErr("--image-pull-secret %q: %s", s, strings.Join(errs, "; "))
		}
	}
	if s := o.ServiceAccount; s != "" {
		if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
			return o, usageErr("--service-account %q is not a valid service account name: %s", s, strings.Join(errs, "; "))
		}
	}
	if f := c.String("pod-template"); f != "" {
		if o.Template, err = pod.LoadTemplate(f); err != nil {
			return o, usageErr("%v", err)
		}
	}
	switch v := strings.ToLower(c.String("istio-sidecar")); v {
	case "":
		switch c.String("deployer") {
		case "job", "tfjob", "pytorchjob":
			// a sidecar would keep the pod running after the workload ended (original Fairing's default)
			f := false
			o.IstioSidecar = &f
		}
	case "true", "false":
		b := v == "true"
		o.IstioSidecar = &b
	default:
		return o, usageErr("--istio-sidecar %q: want true or false", v)
	}
	return o, nil
}

func spec(c *cli.Context, ns string, po pod.Options) (*workload.Spec, error) {
	id := c.String("id")
	if id == "" {
		id = randomID()
	}
	if errs := validation.IsValidLabelValue(id); len(errs) > 0 {
		return nil, usageErr("--id %q: %s", id, strings.Join(errs, "; "))
	}
	if n := c.String("name"); n != "" {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, usageErr("--name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	s := &workload.Spec{Name: c.String("name"), Namespace: ns, ID: id, Pod: po, Timeout: c.Duration("timeout")}
	if c.IsSet("ttl") {
		t := c.Duration("ttl")
		s.TTL = &t
	}
	s.Job.Runs = int32(c.Int("runs"))
	s.Training = workload.TrainingOptions{Chief: int32(c.Int("chief")), Workers: int32(c.Int("workers")), PS: int32(c.Int("ps")),
		Masters: int32(c.Int("masters")), CleanPodPolicy: c.String("clean-pod-policy")}
	s.Serving = workload.ServingOptions{Port: int32(c.Int("port")), TargetPort: int32(c.Int("target-port")), Replicas: int32(c.Int("replicas")),
		ServiceType: c.String("service-type"), ClusterDomain: c.String("cluster-domain"), URLPath: c.String("url-path")}
	mr := int32(c.Int("min-ready-seconds"))
	s.Serving.MinReadySeconds = &mr
	s.KServe = workload.KServeOptions{ModelFormat: c.String("model-format"), StorageURI: c.String("storage-uri"), Port: int32(c.Int("port"))}
	if p := c.Int64("canary-traffic-percent"); p >= 0 {
		s.KServe.CanaryTrafficPercent = &p
	}
	return s, nil
}

func doRun(c *cli.Context, stdout, stderr io.Writer) error {
	out := c.String("output")
	if out != "text" && out != "json" && !(out == "yaml" && c.Bool("dry-run")) {
		return usageErr("--output %q: want text or json", out)
	}
	if c.Bool("build-in-cluster") {
		return doBuildInCluster(c, stdout, stderr)
	}
	for _, f := range buildFlags() {
		if n := f.Names()[0]; c.IsSet(n) && !fromEnv(f) {
			return usageErr("--%s is an option of the in-cluster build: add --build-in-cluster", n)
		}
	}
	img, err := image(c)
	if err != nil {
		return err
	}
	po, err := podOptions(c, img)
	if err != nil {
		return err
	}
	kind := strings.ToLower(c.String("deployer"))
	if kind == "vertex" {
		return doVertex(c, po, stdout, stderr)
	}
	v, err := versions(c)
	if err != nil {
		return err
	}
	d, err := deploy.Driver(kind, v)
	if err != nil {
		return usageErr("%v", err)
	}
	cleanup, err := deploy.ParseCleanup(c.String("cleanup"))
	if err != nil {
		return usageErr("%v", err)
	}
	logs := follow.LogMode(c.String("logs"))
	if logs != follow.LogsMain && logs != follow.LogsAll && logs != follow.LogsNone {
		return usageErr("--logs %q: want main, all or none", logs)
	}

	if c.Bool("dry-run") {
		// a dry run needs no cluster; the namespace is left out unless given
		s, err := spec(c, c.String("namespace"), po)
		if err != nil {
			return err
		}
		objs, err := d.Build(s)
		if err != nil {
			return usageErr("%v", err)
		}
		format := "yaml"
		if out == "json" {
			format = "json"
		}
		b, err := deploy.Render(objs, format)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}

	cl, err := clients(c)
	if err != nil {
		return usageErr("%v", err)
	}
	s, err := spec(c, cl.Namespace, po)
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout == 0 && (kind == "serving" || kind == "kserve") {
		timeout = 10 * time.Minute
	}
	if timeout > 0 && (kind == "job" || kind == "tfjob" || kind == "pytorchjob") {
		// the server's activeDeadlineSeconds fires first and is reported as DeadlineExceeded
		timeout += 15 * time.Second
	}
	logOut, progress := stdout, stderr
	if out == "json" {
		logOut = stderr
	}
	if c.Bool("quiet") {
		progress = io.Discard
	}
	res, err := deploy.Run(c.Context, cl, d, s, deploy.RunOptions{
		Detach:  c.Bool("detach"),
		Cleanup: cleanup,
		Follow: follow.Options{
			Logs: logs, Out: logOut, Progress: progress, FailFast: c.Bool("fail-fast"), Timeout: timeout,
		},
	})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintln(stderr, deploy.Summary(res))
	rj := resultJSON{Result: res, Image: img}
	if f := c.String("result-file"); f != "" {
		b, err := json.Marshal(rj)
		if err != nil {
			return err
		}
		// written in place: the file may be a pod's termination log
		if err := os.WriteFile(f, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "fairing-submit: --result-file: %v\n", err)
		}
	}
	if out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rj); err != nil {
			return err
		}
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

func doVertex(c *cli.Context, po pod.Options, stdout, stderr io.Writer) error {
	o := vertex.Options{
		Project: c.String("vertex-project"), Region: c.String("vertex-region"), Endpoint: c.String("vertex-endpoint"),
		DisplayName: c.String("name"), Image: po.Image, Command: po.Command, Args: po.Args,
		MachineType: c.String("machine-type"), AcceleratorType: c.String("accelerator-type"), AcceleratorCount: int32(c.Int("accelerator-count")),
		ReplicaCount: int64(c.Int("replicas")), ServiceAccount: c.String("vertex-service-account"), Labels: po.Labels,
		PollInterval: c.Duration("vertex-poll-interval"),
	}
	if o.DisplayName == "" {
		id := c.String("id")
		if id == "" {
			id = randomID()
		}
		o.DisplayName = "fairing-job-" + id
	}
	for _, e := range po.Env {
		if e.ValueFrom != nil {
			return usageErr("vertex: environment variables from Kubernetes secrets are not available on Vertex AI")
		}
		o.Env = append(o.Env, vertex.EnvVar{Name: e.Name, Value: e.Value})
	}
	if len(po.EnvFrom) > 0 || len(po.Volumes) > 0 || po.Template != nil || len(po.Credentials) > 0 {
		return usageErr("vertex: --env-from-secret, --volume, --pod-template and --credentials are Kubernetes options; Vertex AI jobs take only --image, the command, --env and machine options")
	}
	if c.Bool("dry-run") {
		body, err := vertex.Request(o)
		if err != nil {
			return usageErr("%v", err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(body)
	}
	ctx := c.Context
	if t := c.Duration("timeout"); t > 0 {
		var cancel func()
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	progress := stderr
	if c.Bool("quiet") {
		progress = io.Discard
	}
	res, err := vertex.Submit(ctx, o, !c.Bool("detach"), progress)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	msg := fmt.Sprintf("vertex CustomJob %s: %s", res.Name, res.State)
	if res.Message != "" {
		msg += ": " + res.Message
	}
	fmt.Fprintln(stderr, msg)
	if c.String("output") == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"kind": "vertex", "name": res.Name, "state": res.State, "message": res.Message, "exitCode": res.ExitCode, "url": res.URL}); err != nil {
			return err
		}
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}
