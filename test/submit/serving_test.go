package submit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// A real server (busybox httpd) as Deployment + Service: fairing-submit waits until it is
// available and prints its cluster URL; status and delete work on it.
func TestServingClusterIP(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	r := submit(t, ns, "run", "-d", "serving", "--name", "web", "--image", busybox, "--port", "80", "--target-port", "8080",
		"--url-path", "predict", "--cluster-domain", "corp.local", "-o", "json", "--", "httpd", "-f", "-p", "8080")
	var res struct{ State, URL string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.State != "Ready" {
		t.Fatalf("want Ready\n%s", r)
	}
	if want := "http://web." + ns + ".svc.corp.local:80/predict"; res.URL != want {
		t.Errorf("url %q, want %q", res.URL, want)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil || d.Status.AvailableReplicas != 1 {
		t.Fatalf("deployment not available: %v", err)
	}
	st := submit(t, ns, "status", "web")
	if !strings.Contains(st.stdout, "serving/web in namespace "+ns+": Ready") || !strings.Contains(st.stdout, "url: http://web.") {
		t.Errorf("status: %s", st)
	}
	if del := submit(t, ns, "delete", "web"); del.code != 0 {
		t.Fatalf("delete: %s", del)
	}
	for _, get := range []func() error{
		func() error {
			_, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("left after delete: %v", err)
		}
	}
}

// type LoadBalancer: the URL is the load balancer's hostname once it has one (the test plays the
// cloud's load-balancer controller).
func TestServingLoadBalancerHostname(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ns := namespace(t)
	done := background(t, ns, "run", "-d", "serving", "--name", "lb", "--image", busybox, "--service-type", "LoadBalancer",
		"--", "httpd", "-f", "-p", "8080")
	ctx := context.Background()
	eventually(t, 60*time.Second, "service lb", func() bool {
		_, err := cs.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
		return err == nil
	})
	time.Sleep(4 * time.Second) // let it wait for the load balancer first
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb-123.elb.example.com"}}
		_, err = cs.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stderr, "serving/lb is ready at http://lb-123.elb.example.com:8080") {
		t.Fatalf("want the load balancer's hostname in the URL\n%s", r)
	}
}
