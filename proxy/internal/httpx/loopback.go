package httpx

import (
	"net"
	"net/http"
	"strings"
)

// PeerAddr is the IP address of r's peer, without its port. X-Forwarded-For
// is not trusted: any client can write it.
func PeerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// CheckLoopback is the loopback gate of admin endpoints: it refuses peers
// not on the loopback interface, and requests naming another host.
func CheckLoopback(r *http.Request) error {
	ip := net.ParseIP(PeerAddr(r))
	if ip == nil || !ip.IsLoopback() {
		return Errorf(http.StatusForbidden, CodeForbidden, "this admin endpoint answers loopback clients only")
	}
	if !LoopbackHost(r.Host) {
		// A web page whose name was rebound to 127.0.0.1 reaches us from
		// loopback, but its browser still sends its own name.
		return Errorf(http.StatusForbidden, CodeForbidden, "this admin endpoint answers requests for localhost or a loopback address only")
	}
	return nil
}

// LoopbackHost reports whether a Host header names this machine's loopback:
// localhost or a loopback IP literal, with or without a port. An empty Host
// (HTTP/1.0) is accepted: no browser sends one.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
