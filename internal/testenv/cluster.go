package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// EnvKubeconfig names the admin kubeconfig of the test cluster (test/setup.d/50-kubernetes.sh).
const EnvKubeconfig = "TEST_KUBECONFIG"

// The test cluster is shared by the test binaries that go test runs at once (test/submit,
// test/incluster, test/reliability). Tests that only use it hold a shared lock on it; a test that
// stops and restarts parts of it (the API server) holds it alone, so that no other test sees the
// outage. The lock is a flock(2) on a file beside the kubeconfig: the kernel drops it when its
// holder dies, so a killed test binary cannot leave it held.

// ShareCluster holds the test cluster of TEST_KUBECONFIG shared until t ends: it waits while a
// test that restarts parts of the cluster (OwnCluster) runs. Call it before the test's first request.
func ShareCluster(t testing.TB) { t.Helper(); holdCluster(t, false) }

// OwnCluster holds the test cluster of TEST_KUBECONFIG alone until t ends: it waits for every test
// holding it shared, in any test binary, to end. It must not be called by a test binary whose
// other tests hold the cluster shared while they wait for this one (t.Parallel tests paused after
// ShareCluster): that would never end.
func OwnCluster(t testing.TB) { t.Helper(); holdCluster(t, true) }

func holdCluster(t testing.TB, alone bool) {
	t.Helper()
	start := time.Now()
	release, err := LockCluster(Need(t, EnvKubeconfig), alone)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for the test cluster (alone: %v)", waited.Round(time.Millisecond), alone)
	}
	t.Cleanup(release)
}

// LockCluster takes the lock of the test cluster whose kubeconfig is given (alone: exclusive,
// else shared) and returns its release. For TestMain, which has no testing.TB.
func LockCluster(kubeconfig string, alone bool) (release func(), err error) {
	name := filepath.Join(filepath.Dir(kubeconfig), "tests.lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the test cluster's lock: %w", err)
	}
	how := syscall.LOCK_SH
	if alone {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil // closing the only descriptor releases the lock
}
