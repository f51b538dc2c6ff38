package freeport

import (
	"net"
	"testing"
)

// Addr never hands out an address twice, even though each is free again
// (its listener closed) by the time the next call asks the kernel.
func TestAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("Addr returned %s twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr) // free, and on loopback
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		l.Close()
	}
}
