package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// RBACHint tells users where the shipped Role is; the error messages point at it.
const RBACHint = "deploy/rbac/fairing-submit.yaml"

// Explain wraps err, returned by the API server for verb on resource in namespace, with what was
// missing and how to fix it. Errors it does not recognise are only wrapped with the action.
func Explain(err error, verb string, gr schema.GroupResource, namespace string) error {
	if err == nil {
		return nil
	}
	what := gr.String()
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fmt.Errorf("%s %s in namespace %q: %w", verb, what, namespace, err)
	}
	st := status.Status()
	switch {
	case apierrors.IsForbidden(err):
		return &Error{Err: err, Msg: fmt.Sprintf(
			"not allowed to %s %s in namespace %q (RBAC): ask a cluster admin to grant it, for example with the Role in %s "+
				"(kubectl -n %s apply -f %s, then bind it to your user or service account with a RoleBinding)",
			verb, what, namespace, RBACHint, namespace, RBACHint)}
	case apierrors.IsNotFound(err) && st.Details != nil && st.Details.Kind == "namespaces":
		return &Error{Err: err, Msg: fmt.Sprintf(
			"namespace %q does not exist: create it (kubectl create namespace %s) or pick another with --namespace",
			st.Details.Name, st.Details.Name)}
	case apierrors.IsUnauthorized(err):
		return &Error{Err: err, Msg: "the cluster rejected the credentials (401 Unauthorized): refresh the kubeconfig's credentials or log in again"}
	case apierrors.IsAlreadyExists(err):
		name := ""
		if st.Details != nil {
			name = st.Details.Name
		}
		return &Error{Err: err, Msg: fmt.Sprintf(
			"%s %q already exists in namespace %q: choose another --name, or delete it first (fairing-submit delete %s)",
			what, name, namespace, name)}
	}
	return fmt.Errorf("%s %s in namespace %q: %w", verb, what, namespace, err)
}

// MissingNamespace returns the explained NotFound error when namespace ns does not exist, and nil
// when it does or when that cannot be told (no right to read namespaces). Call it when an object
// in ns was not found: without it, a missing namespace reads as a missing object.
func MissingNamespace(ctx context.Context, c *Clients, ns string) error {
	_, err := c.Typed.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Explain(err, "get", schema.GroupResource{Resource: "namespaces"}, ns)
	}
	return nil
}

// Error is an API error with an explanation. Its message is the explanation followed by the
// server's own words; errors.Is/As still reach the API error.
type Error struct {
	Msg string
	Err error
}

func (e *Error) Error() string { return e.Msg + " (server said: " + e.Err.Error() + ")" }
func (e *Error) Unwrap() error { return e.Err }

// MissingAPIError says that a custom resource's API is not served by the cluster.
type MissingAPIError struct {
	GVR    schema.GroupVersionResource
	Kind   string
	Served []string // versions of the group the cluster does serve
	Hint   string   // how to install it
}

func (e *MissingAPIError) Error() string {
	gv := e.GVR.GroupVersion().String()
	msg := fmt.Sprintf("this cluster does not serve %s (%s): its CRD is not installed", e.Kind, gv)
	if len(e.Served) > 0 {
		msg = fmt.Sprintf("this cluster does not serve %s %s, only %s: pin a served version (--deployer-api) or upgrade the operator",
			e.Kind, gv, strings.Join(e.Served, ", "))
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// CheckServed asks discovery whether gvr is served, so that a missing CRD gives a message naming
// the operator to install instead of "the server could not find the requested resource".
func CheckServed(d discovery.DiscoveryInterface, gvr schema.GroupVersionResource, kind, hint string) error {
	list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err == nil {
		for _, r := range list.APIResources {
			if r.Name == gvr.Resource {
				return nil
			}
		}
		return &MissingAPIError{GVR: gvr, Kind: kind, Hint: hint}
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("discover %s: %w", gvr.GroupVersion(), err)
	}
	missing := &MissingAPIError{GVR: gvr, Kind: kind, Hint: hint}
	groups, gerr := d.ServerGroups()
	if gerr == nil {
		for _, g := range groups.Groups {
			if g.Name != gvr.Group {
				continue
			}
			for _, v := range g.Versions {
				missing.Served = append(missing.Served, v.Version)
			}
		}
		sort.Strings(missing.Served)
	}
	return missing
}
