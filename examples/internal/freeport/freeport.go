// Package freeport hands out loopback addresses for the example programs
// and their tests to start servers on.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// handedOut holds the addresses Addr has returned in this process.
var handedOut sync.Map

// The ports Addr tries first: below Linux's default ephemeral range
// (32768-60999), from which the kernel picks the source port of every
// outgoing connection and the port of every listener on :0. A port the
// kernel found free there could be taken again, between Addr's check and
// the caller's bind, by any connection any process opens (CI once saw
// tok's egress listener fail with "address already in use" that way);
// below it, only another listener asking for that very port can.
const (
	lowPort  = 20000
	highPort = 32000
	tries    = 64
)

// Addr returns a loopback address whose port was free a moment ago, never
// one it returned before in this process. Another process could still bind
// it before the caller does; startup then fails with a clear error, and a
// rerun picks other ports.
func Addr() (string, error) {
	for range tries {
		addr := "127.0.0.1:" + strconv.Itoa(lowPort+rand.IntN(highPort-lowPort))
		if _, taken := handedOut.Load(addr); taken {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use
		}
		l.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr, nil
		}
	}
	// The low range is crowded: let the kernel pick.
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
