//go:build !linux

package tokbin

import (
	"os/exec"
	"syscall"
)

// SetProcAttr puts cmd in its own process group; only Linux can also tie
// a child's life to its parent's.
func SetProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
