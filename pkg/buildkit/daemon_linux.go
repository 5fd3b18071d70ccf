package buildkit

import "syscall"

// daemonProcAttr puts buildkitd in its own process group (a terminal's Ctrl-C reaches this
// process, which then stops the daemon in order) and has the kernel SIGTERM it if this process
// dies without stopping it.
func daemonProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func unmount(mp string) error {
	return syscall.Unmount(mp, syscall.MNT_DETACH)
}
