//go:build !linux

package buildkit

import (
	"errors"
	"syscall"
)

func daemonProcAttr() *syscall.SysProcAttr { return nil }

func unmount(mp string) error {
	return errors.New("unmounting is only implemented on Linux")
}
