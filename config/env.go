package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/tokproxy/tok/vault"
)

// ApplyEnv applies the environment overrides, which win over the file:
// TOK_POSTGRES_URL, when set, selects postgres with that URL (and clears
// Vault.Bolt); TOK_REDIS_URL, when set, replaces Vault.Volatile. getenv is usually os.Getenv. It returns a description of
// each override applied, for the startup log; never a value.
func (c *Config) ApplyEnv(getenv func(string) string) []string {
	var applied []string
	if u := getenv(EnvPostgresURL); u != "" {
		c.Vault.Postgres, c.Vault.Bolt = u, ""
		applied = append(applied, EnvPostgresURL+" selects the postgres store")
	}
	if u := getenv(EnvRedisURL); u != "" {
		c.Vault.Volatile = u
		applied = append(applied, EnvRedisURL+" puts the volatile store on redis")
	}
	if getenv(EnvKeyring) != "" {
		applied = append(applied, EnvKeyring+" holds the keyring; vault.keyring is not read")
	}
	return applied
}

// LoadKeyring reads the keyring: from the environment variable TOK_KEYRING
// (the keyring file's contents) when it is set, else from the file
// Vault.Keyring. It returns the keyring and where it came from (for logs).
// The keyring's keys are never part of an error.
func (c *Config) LoadKeyring(getenv func(string) string) (vault.KeyringFile, string, error) {
	if s := getenv(EnvKeyring); s != "" {
		f, err := vault.ParseKeyringFile([]byte(s))
		if err != nil {
			return f, "", fmt.Errorf("env %s: %w", EnvKeyring, err)
		}
		return f, "env " + EnvKeyring, nil
	}
	b, err := os.ReadFile(c.Vault.Keyring)
	if errors.Is(err, os.ErrNotExist) {
		return vault.KeyringFile{}, "", fmt.Errorf("read keyring: %w; create one with \"tok keys new -o %s\" or set %s", err, c.Vault.Keyring, EnvKeyring)
	}
	if err != nil {
		return vault.KeyringFile{}, "", fmt.Errorf("read keyring: %w", err)
	}
	f, err := vault.ParseKeyringFile(b)
	if err != nil {
		return f, "", fmt.Errorf("%s: %w", c.Vault.Keyring, err)
	}
	return f, c.Vault.Keyring, nil
}

// KeyringModeProblem returns why the keyring file at path is too open (group
// or others may read or write it), or "". A keyring mounted from a
// Kubernetes Secret is 0644 unless the volume sets defaultMode, so this is
// a warning, not a refusal.
func KeyringModeProblem(path string) string {
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("keyring file %s has mode %#o: group or others may read the data keys; chmod 600 it (in Kubernetes: defaultMode: 0400)", path, st.Mode().Perm())
}

// Resolve returns the value of a config string that may reference the
// environment: "env:NAME" is the variable NAME (an error if it is unset or
// empty); anything else is returned as is.
//
// A value may also be a template holding "{env:NAME}" anywhere, e.g.
// "Bearer {env:STRIPE_SECRET}": each is replaced by the variable's value,
// so a provider's prefix need not live in the environment.
func Resolve(s string, getenv func(string) string) (string, error) {
	name, ok := strings.CutPrefix(s, "env:")
	if !ok {
		return resolveTemplate(s, getenv)
	}
	v := getenv(name)
	if v == "" {
		return "", fmt.Errorf("environment variable %s is not set", name)
	}
	return v, nil
}

func resolveTemplate(s string, getenv func(string) string) (string, error) {
	names, err := EnvRefs(s)
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return s, nil
	}
	var b strings.Builder
	for rest := s; ; {
		before, after, ok := strings.Cut(rest, "{env:")
		b.WriteString(before)
		if !ok {
			break
		}
		name, tail, _ := strings.Cut(after, "}")
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		rest = tail
	}
	return b.String(), nil
}

// EnvRefs returns the environment variables a value reads: NAME for
// "env:NAME", and each NAME of a template's "{env:NAME}". An unclosed or
// misnamed reference is an error.
func EnvRefs(s string) ([]string, error) {
	if name, ok := strings.CutPrefix(s, "env:"); ok {
		return []string{name}, nil
	}
	var out []string
	for rest := s; ; {
		_, after, ok := strings.Cut(rest, "{env:")
		if !ok {
			return out, nil
		}
		name, tail, closed := strings.Cut(after, "}")
		if !closed || !envNameRE.MatchString(name) {
			return nil, fmt.Errorf("%q: write {env:NAME} with NAME an environment variable name", s)
		}
		out = append(out, name)
		rest = tail
	}
}

// Spec returns how the field's values are tokenized. Parse has validated
// the field, so an error means a Field built by hand is invalid.
func (f Field) Spec() (vault.Spec, error) {
	format := f.Format
	if _, err := vault.ParseFormat(format.String()); err != nil {
		return vault.Spec{}, err // a Format beyond the named ones
	}
	s := vault.Spec{Format: format, Unique: f.Unique, TTL: f.TTL, Bound: f.Bind != "", RevealTo: f.RevealTo}
	if f.MaxReveals > 0 {
		s.MaxReveals = uint32(min(f.MaxReveals, math.MaxUint32))
	}
	if f.RevealWindow != nil {
		s.RevealWindow = *f.RevealWindow
	}
	switch f.Store {
	case "", StoreDisk:
	case StoreMemory:
		if f.TTL <= 0 {
			return vault.Spec{}, errors.New("store memory needs a ttl")
		}
		s.Volatile = true
	default:
		return vault.Spec{}, fmt.Errorf("unknown store %q", f.Store)
	}
	if f.Keep != nil {
		if format != vault.FormatPAN {
			return vault.Spec{}, errors.New("keep is only for format pan")
		}
		// Config counts digits (0 keeps none); vault.Spec reserves 0 for
		// the default and -1 for none.
		s.KeepFirst = keepCount(f.Keep.First)
		s.KeepLast = keepCount(f.Keep.Last)
	}
	return s, nil
}

func keepCount(p *int) int {
	switch {
	case p == nil:
		return 0
	case *p == 0:
		return -1
	}
	return *p
}
