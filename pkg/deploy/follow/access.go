package follow

import (
	"context"
	"fmt"

	"github.com/fairing-dev/fairing/pkg/deploy/kube"
	"github.com/fairing-dev/fairing/pkg/deploy/workload"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the caller may create the
// workload's objects and, when it is to be followed, list and watch them and their pods and read
// pod logs. Without those rights following would hang or show nothing, and the workload would be
// left behind; with this check nothing is created and the message names what is missing. When
// the review API itself is unavailable the check is skipped (the create reports RBAC errors).
func CheckAccess(ctx context.Context, c *kube.Clients, d workload.Driver, ns string, follow bool, logs LogMode) error {
	type want struct {
		verb string
		gr   schema.GroupResource
		sub  string
	}
	var wants []want
	rs := d.Resources()
	for _, gr := range rs {
		wants = append(wants, want{"create", gr, ""})
	}
	if follow {
		pods := schema.GroupResource{Resource: "pods"}
		wants = append(wants, want{"list", rs[0], ""}, want{"watch", rs[0], ""}, want{"list", pods, ""}, want{"watch", pods, ""})
		if logs != LogsNone {
			wants = append(wants, want{"get", pods, "log"})
		}
	}
	for _, w := range wants {
		r, err := c.Typed.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: w.verb, Group: w.gr.Group, Resource: w.gr.Resource, Subresource: w.sub}}}, metav1.CreateOptions{})
		if err != nil {
			return nil
		}
		if r.Status.Allowed {
			continue
		}
		what := w.gr.String()
		if w.sub != "" {
			what += "/" + w.sub
		}
		who := ""
		if sr, err := c.Typed.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{}); err == nil && sr.Status.UserInfo.Username != "" {
			who = fmt.Sprintf(" as %q", sr.Status.UserInfo.Username)
		}
		msg := fmt.Sprintf("not allowed to %s %s in namespace %q%s (RBAC): ask a cluster admin to grant it, for example with the Role in %s "+
			"(kubectl -n %s apply -f %s, then bind it to your user or service account with a RoleBinding)",
			w.verb, what, ns, who, kube.RBACHint, ns, kube.RBACHint)
		switch {
		case w.verb != "create" && w.sub == "":
			msg += "; without it the workload cannot be followed (--detach launches it without following)"
		case w.sub == "log":
			msg += "; or pass --logs none"
		}
		if r.Status.Reason != "" {
			msg += " (server said: " + r.Status.Reason + ")"
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}
