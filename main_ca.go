package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokproxy/tok/proxy"
)

// caCommand runs "ca new": tok's own CA for the egress forward-proxy mode.
func caCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "new" {
		return usageError(stderr, "tok ca: want new")
	}
	fs := newFlags("ca new", stderr)
	dir := fs.String("o", "", "`DIR` to write egress-ca.crt and egress-ca.key to")
	if code, ok := parseFlags(fs, args[1:], stderr); !ok {
		return code
	}
	if *dir == "" {
		return usageError(stderr, "tok ca new: -o DIR is required")
	}
	certPEM, keyPEM, err := proxy.NewForwardCA()
	if err == nil {
		err = os.MkdirAll(*dir, 0o700)
	}
	crt, key := filepath.Join(*dir, "egress-ca.crt"), filepath.Join(*dir, "egress-ca.key")
	if err == nil {
		err = writeNew(key, keyPEM, 0o600)
	}
	if err == nil {
		if err = writeNew(crt, certPEM, 0o644); err != nil {
			os.Remove(key)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "tok ca new:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s (install it in the app's trust store) and %s (keep it private); set tls.egress_ca to them\n", crt, key)
	return exitOK
}

// writeNew writes data to a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
