// Package kube connects to a Kubernetes cluster the way kubectl does and turns the API server's
// errors into messages that say what is missing and how to fix it.
package kube

import (
	"fmt"
	"net/http"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options selects the cluster, user and namespace, with kubectl's flags and precedence.
type Options struct {
	// Kubeconfig is an explicit kubeconfig file. Empty: $KUBECONFIG, then ~/.kube/config, then the
	// in-cluster service account.
	Kubeconfig string
	// Context overrides the kubeconfig's current-context.
	Context string
	// Namespace overrides every other source of the namespace.
	Namespace string
	// QPS and Burst of the client-side rate limiter (client-go defaults 5/10 make following slow).
	QPS   float32
	Burst int
	// Timeout of a single request (not of watches or log streams). Zero: none.
	Timeout time.Duration
	// UserAgent sent with every request.
	UserAgent string
	// WrapTransport, if set, wraps the HTTP transport (tests count or inspect requests with it).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Clients bundles what the deployers need: typed clients for core kinds, the dynamic client for
// custom resources, discovery to tell a missing CRD from a missing object, and the namespace.
type Clients struct {
	Config    *rest.Config
	Typed     kubernetes.Interface
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	// Namespace resolved like kubectl: --namespace > kubeconfig context > in-cluster service
	// account namespace (or $POD_NAMESPACE) > "default".
	Namespace string
}

// Load builds the REST config and resolves the namespace, without contacting the cluster.
func Load(o Options) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	overrides.Context.Namespace = o.Namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("resolve namespace: %w", explainConfig(err))
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load kubeconfig: %w", explainConfig(err))
	}
	cfg.QPS, cfg.Burst = 50, 100
	if o.QPS > 0 {
		cfg.QPS = o.QPS
	}
	if o.Burst > 0 {
		cfg.Burst = o.Burst
	}
	cfg.Timeout = o.Timeout
	cfg.UserAgent = "fairing-submit"
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	if o.WrapTransport != nil {
		cfg.Wrap(o.WrapTransport)
	}
	return cfg, ns, nil
}

// New connects (lazily: no request is made) to the cluster chosen by o.
func New(o Options) (*Clients, error) {
	cfg, ns, err := Load(o)
	if err != nil {
		return nil, err
	}
	return FromConfig(cfg, ns)
}

// FromConfig builds the clients for an existing REST config.
func FromConfig(cfg *rest.Config, namespace string) (*Clients, error) {
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	return &Clients{Config: cfg, Typed: typed, Dynamic: dyn, Discovery: typed.Discovery(), Namespace: namespace}, nil
}

func explainConfig(err error) error {
	if clientcmd.IsEmptyConfig(err) {
		return fmt.Errorf("no Kubernetes cluster configured: set --kubeconfig or $KUBECONFIG, create ~/.kube/config, or run inside a pod (%w)", err)
	}
	return err
}
