package examples

import (
	"os/exec"
	"syscall"
)

// setProcAttr has the kernel kill cmd if the test binary dies without
// running its cleanups (a test timeout, say).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
