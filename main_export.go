package main

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokproxy/tok/proxy"
	auditlog "github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
)

// The export file format, version 1. The first line is an exportHeader:
// a fresh 256-bit data key, sealed to the recipient's X25519 public key
// with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-256-GCM, info exportInfo). Each record line is an exportRecord: the
// card number sealed with AES-256-GCM under the data key, a random 96-bit
// nonce in front, the associated data exportInfo + " " + token, so a card
// cannot be moved to another token's line. The last line is an
// exportTrailer counting the records: a file cut short has none.
const (
	exportVersion = 1
	exportInfo    = "tok export v1"
	exportPage    = 1000 // records per Store.Scan
)

type exportHeader struct {
	TokExport int       `json:"tok_export"`
	KEM       string    `json:"kem"`
	KDF       string    `json:"kdf"`
	AEAD      string    `json:"aead"`
	Info      string    `json:"info"`
	Recipient string    `json:"recipient"`  // "sha256:" + hex of the recipient's public key (PKIX DER)
	SealedKey string    `json:"sealed_key"` // base64 of HPKE's enc || ciphertext of the data key
	Created   time.Time `json:"created"`
}

type exportRecord struct {
	Token     string     `json:"token"`
	Format    string     `json:"format"`
	MaskedPAN string     `json:"masked_pan"`
	Created   time.Time  `json:"created"`
	Expires   *time.Time `json:"expires,omitempty"`
	// RevealPolicy is the record's reveal policy with its count so far,
	// for the receiving vault to keep enforcing; absent when it has none.
	RevealPolicy *proxy.RevealPolicy `json:"reveal_policy,omitempty"`
	Sealed       string              `json:"sealed"` // base64 of nonce || AES-256-GCM ciphertext and tag
}

type exportTrailer struct {
	End     bool `json:"end"`
	Records int  `json:"records"`
}

// exportCmd runs tok export: every live record of the vault, its card
// number sealed to a recipient's public key (never tok's own keys), for
// moving the cards to another vault.
func exportCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "keygen" {
		return exportKeygen(args[1:], stdout, stderr)
	}
	fs := newFlags("export", stderr)
	cfgPath := fs.String("config", "", "config `FILE` naming the vault and keyring (default ./tok.yaml if present, else demo defaults)")
	recipient := fs.String("recipient", "", "the recipient's X25519 public key `FILE` (PEM, as tok export keygen or openssl pkey -pubout write it)")
	out := fs.String("out", "", "export `FILE` to write (must not exist; mode 0600)")
	auditPath := fs.String("audit", "", "audit log `FILE` for this run (default: the config's; needed when a running tok holds it)")
	operator := fs.String("operator", operatorName(), "who runs the export, for the audit log")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *recipient == "" || *out == "" {
		return usageError(stderr, "tok export: -recipient and -out are required")
	}
	pub, pubID, err := readRecipient(*recipient)
	if err != nil {
		fmt.Fprintln(stderr, "tok export:", err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tv, err := openToolVault(ctx, "export", *cfgPath, *auditPath, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "tok export:", err)
		return exitFail
	}
	defer func() {
		if err := tv.Close(); err != nil {
			fmt.Fprintln(stderr, "tok export:", err)
		}
	}()
	// No audit line, no export: the cards leave only once the log says so.
	ev := auditlog.Event{Event: "export", Client: *operator, File: *out, Recipient: pubID, Outcome: "started"}
	if err := tv.record(ev); err != nil {
		fmt.Fprintln(stderr, "tok export: the audit log cannot be written; refusing to export:", err)
		return exitFail
	}
	start := time.Now()
	n, unreadable, err := writeExport(ctx, tv, pub, pubID, *out)
	ev.Count, ev.Outcome = n, "ok"
	switch {
	case err != nil:
		ev.Outcome = "failed"
	case unreadable > 0:
		ev.Outcome = "unreadable_records"
	}
	if werr := tv.record(ev); werr != nil {
		fmt.Fprintln(stderr, "tok export: writing the audit log's closing line failed:", werr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tok export:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "exported %d records to %s, sealed to %s (%v)\n", n, *out, pubID, time.Since(start).Round(time.Millisecond))
	if unreadable > 0 {
		fmt.Fprintf(stdout, "%d records did not open with the keyring and are not in the export: run tok vault check\n", unreadable)
		return exitFail
	}
	return exitOK
}

// readRecipient reads a PEM X25519 public key and returns it with its id,
// "sha256:" and the hex SHA-256 of its PKIX encoding.
func readRecipient(path string) (hpke.PublicKey, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, "", fmt.Errorf("%s: not a PEM public key (want -----BEGIN PUBLIC KEY-----)", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdh.PublicKey)
	if !ok || ek.Curve() != ecdh.X25519() {
		return nil, "", fmt.Errorf("%s: not an X25519 key (make one with tok export keygen, or openssl genpkey -algorithm X25519)", path)
	}
	pk, err := hpke.NewDHKEMPublicKey(ek)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(blk.Bytes)
	return pk, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// writeExport writes every live record of the vault to path and returns
// how many it wrote and how many did not open with the keyring.
func writeExport(ctx context.Context, tv *toolVault, pub hpke.PublicKey, pubID, path string) (n, unreadable int, err error) {
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	sealedKey, err := hpke.Seal(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(exportInfo), dataKey)
	if err != nil {
		return 0, 0, fmt.Errorf("seal the data key: %w", err)
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return 0, 0, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path) // a partial export is no export
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	err = enc.Encode(exportHeader{TokExport: exportVersion, KEM: "DHKEM(X25519, HKDF-SHA256)", KDF: "HKDF-SHA256", AEAD: "AES-256-GCM",
		Info: exportInfo, Recipient: pubID, SealedKey: base64.StdEncoding.EncodeToString(sealedKey), Created: time.Now().UTC()})
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	for after := ""; ; {
		if err := ctx.Err(); err != nil {
			return n, unreadable, err
		}
		recs, err := tv.store.Scan(ctx, after, exportPage)
		if err != nil {
			return n, unreadable, fmt.Errorf("scan the vault: %w", err)
		}
		for _, rec := range recs {
			after = rec.Token
			if rec.Expired(now) {
				continue
			}
			pan, err := tv.keys.OpenRecord(rec)
			if err != nil {
				unreadable++
				continue
			}
			line := sealRecord(aead, rec, pan)
			if !rec.Policy.IsZero() {
				reveals, err := tv.vault.Reveals(ctx, rec)
				if err != nil {
					return n, unreadable, fmt.Errorf("reveal count of a policy-bound record: %w", err)
				}
				line.RevealPolicy = proxy.NewRevealPolicy(rec.Policy, reveals)
			}
			if err := enc.Encode(line); err != nil {
				return n, unreadable, err
			}
			n++
		}
		if len(recs) < exportPage {
			break
		}
	}
	if err := enc.Encode(exportTrailer{End: true, Records: n}); err != nil {
		return n, unreadable, err
	}
	if err := w.Flush(); err != nil {
		return n, unreadable, err
	}
	if err := f.Sync(); err != nil {
		return n, unreadable, err
	}
	return n, unreadable, f.Close()
}

// sealRecord is the export line of rec, its value pan sealed with aead.
func sealRecord(aead cipher.AEAD, rec vault.Record, pan string) exportRecord {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pan)+aead.Overhead())
	rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, []byte(pan), []byte(exportInfo+" "+rec.Token))
	out := exportRecord{Token: rec.Token, Format: rec.Format.String(), MaskedPAN: vault.Mask(pan),
		Created: rec.Created.UTC(), Sealed: base64.StdEncoding.EncodeToString(sealed)}
	if !rec.Expires.IsZero() {
		e := rec.Expires.UTC()
		out.Expires = &e
	}
	return out
}

// exportKeygen writes a recipient key pair: NAME.key (PKCS #8 PEM, mode
// 0600; the recipient keeps it) and NAME.pub (PKIX PEM; the exporter
// passes it to -recipient). Neither is overwritten.
func exportKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("export keygen", stderr)
	name := fs.String("o", "", "`NAME` of the key pair: NAME.key and NAME.pub are written")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *name == "" {
		return usageError(stderr, "tok export keygen: -o is required")
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(stderr, "tok export keygen:", err)
		return exitFail
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		fmt.Fprintln(stderr, "tok export keygen:", err)
		return exitFail
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		fmt.Fprintln(stderr, "tok export keygen:", err)
		return exitFail
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{*name + ".key", "PRIVATE KEY", privDER, 0o600}, {*name + ".pub", "PUBLIC KEY", pubDER, 0o644}} {
		err := writeNew(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode)
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%s exists: tok never overwrites a key", f.path)
		}
		if err != nil {
			fmt.Fprintln(stderr, "tok export keygen:", err)
			return exitFail
		}
	}
	sum := sha256.Sum256(pubDER)
	fmt.Fprintf(stdout, "wrote %s.key (keep it: it opens the exports) and %s.pub (give it to the exporter); recipient sha256:%s\n",
		*name, *name, hex.EncodeToString(sum[:]))
	return exitOK
}
