// Package freeport hands out loopback addresses for the example programs
// and their tests to start servers on.
package freeport

import (
	"fmt"
	"net"
	"sync"
)

// handedOut holds the addresses Addr has returned in this process.
var handedOut sync.Map

// Addr returns a loopback address whose port was free a moment ago, never
// one it returned before in this process: the kernel may offer a port
// again as soon as the listener that found it is closed (two toks of one
// benchmark were once told the same one). Another process could still take
// it before the caller binds it; startup then fails with a clear error,
// and a rerun picks other ports.
func Addr() (string, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("find a free port: %w", err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr, nil
		}
	}
}
