//go:build linux

package tokbin

import (
	"os/exec"
	"syscall"
)

// SetProcAttr puts cmd in its own process group, so a Ctrl-C reaches the
// harness alone (which stops its children in order), and has the kernel
// kill it if the harness dies without stopping it.
func SetProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
