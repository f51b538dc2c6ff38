package e2e

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// importCards is how many cards TestImportExport imports: enough that the
// first run is still going when the test kills it after its first
// checkpoint (every 20 ms), on any machine.
const importCards = 100_000

// The bad lines of the import file, by line number, and why each is bad.
var importBad = map[int]string{
	1000:  "Luhn",
	5000:  "not a JSON object",
	7777:  "5 digits",
	75000: "no card field",
}

// importFile writes dir/cards.jsonl: importCards Luhn-valid cards with ids
// cust_<line>, the bad lines of importBad, and line 42's card again on
// line 43 (as "card", under another id). It returns the card of each good
// line, by line number.
func importFile(t *testing.T, dir string) (path string, cards map[int]string) {
	t.Helper()
	r := rand.New(rand.NewPCG(18, 4))
	cards = map[int]string{}
	var b strings.Builder
	for line := 1; line <= importCards; line++ {
		switch importBad[line] {
		case "Luhn":
			card := luhnComplete(fmt.Sprintf("4%014d", r.Int64N(1e14)))
			card = card[:15] + string('0'+(card[15]-'0'+1)%10)
			fmt.Fprintf(&b, `{"id":"cust_%d","pan":"%s"}`+"\n", line, card)
		case "not a JSON object":
			b.WriteString("4111111111111111\n")
		case "5 digits":
			fmt.Fprintf(&b, `{"id":"cust_%d","number":"12345"}`+"\n", line)
		case "no card field":
			fmt.Fprintf(&b, `{"id":"cust_%d"}`+"\n", line)
		default:
			card := luhnComplete(fmt.Sprintf("5%014d", r.Int64N(1e14)))
			key := "pan"
			if line == 43 {
				card, key = cards[42], "card"
			}
			cards[line] = card
			fmt.Fprintf(&b, `{"id":"cust_%d","%s":"%s"}`+"\n", line, key, card)
		}
	}
	return writeFile(t, dir, "cards.jsonl", b.String()), cards
}

// readMapping reads the first n bytes (all if n < 0) of an import's
// mapping file: the token of each line of the input, by number. A line
// twice, or an id not of its line, fails the test.
func readMapping(t *testing.T, path string, n int64) map[int]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n >= 0 {
		b = b[:n]
	}
	tokens := map[int]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m struct {
			ID    string
			Token string
			Line  int
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("mapping line %q: %v", sc.Text(), err)
		}
		if m.ID != fmt.Sprintf("cust_%d", m.Line) {
			t.Errorf("mapping line %q: id and line do not match", sc.Text())
		}
		if _, dup := tokens[m.Line]; dup {
			t.Errorf("mapping holds line %d twice", m.Line)
		}
		tokens[m.Line] = m.Token
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tokens
}

// TestImportExport is tok import and tok export through the binary: an
// import killed after its first checkpoint resumes with a complete mapping
// and no line twice, bad lines reported by number; the tokens are those
// the running server's convergent /handle gives, and one reveals through
// /@me; import refuses to run beside tok serve on bbolt; tok export seals
// every record to a recipient key, which opens them.
func TestImportExport(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg, secret := revealConfig(t, dir, keyring, "")
	in, cards := importFile(t, dir)
	out := filepath.Join(dir, "map.jsonl")
	args := []string{"import", "-config", cfg, "-in", in, "-out", out, "-checkpoint", "20ms"}

	// The first run is killed once it has checkpointed.
	p, err := tokbin.Start(tokbin.Cmd{Name: "tok import", Bin: tokBin, Args: args, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	var cp struct {
		Offset, Imported, Line int64
		OutBytes               int64 `json:"out_bytes"`
	}
	for deadline := time.Now().Add(30 * time.Second); cp.Imported == 0; time.Sleep(2 * time.Millisecond) {
		if b, err := os.ReadFile(out + ".checkpoint"); err == nil {
			json.Unmarshal(b, &cp)
		}
		select {
		case <-p.Exited():
			t.Fatalf("tok import exited (%v) before the test killed it:\n%s", p.Err(), p.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint with cards imported within 30s:\n%s", p.Tail(20))
		}
	}
	p.Kill()
	// What the kill left: the mapping holds at least what the last
	// checkpoint counts (maybe more, a line cut short at the end).
	b, err := os.ReadFile(out + ".checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	killedAt := readMapping(t, out, cp.OutBytes)
	t.Logf("killed after checkpoint at byte %d (%d cards); the mapping held %d lines", cp.Offset, cp.Imported, len(killedAt))
	if len(killedAt) >= len(cards) {
		t.Fatalf("the killed run had mapped all %d cards: nothing left to resume", len(killedAt))
	}

	// The second run resumes and finishes; the bad lines make it exit 1.
	code, stdout, stderr := tok(t, dir, "", append(args, "-progress", "10ms")...)
	if code != 1 || !strings.Contains(stderr, "resuming "+in) || !strings.Contains(stdout, fmt.Sprintf("imported %d cards", len(cards))) {
		t.Fatalf("resumed import = %d\nstdout: %s\nstderr: %.3000s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "cards imported") {
		t.Errorf("resumed import printed no progress line:\n%.2000s", stderr)
	}
	// Each run names the bad lines it read past its start on stderr.
	for line, why := range importBad {
		out := stderr
		if int64(line) <= cp.Line {
			out = p.Log()
		}
		if !strings.Contains(out, fmt.Sprintf("%s:%d: ", in, line)) {
			t.Errorf("stderr does not name bad line %d (%s)", line, why)
		}
	}
	if _, err := os.Stat(out + ".checkpoint"); !os.IsNotExist(err) {
		t.Errorf("checkpoint after a finished import: %v, want none", err)
	}
	tokens := readMapping(t, out, -1)
	if len(tokens) != len(cards) {
		t.Errorf("mapping holds %d lines, want %d", len(tokens), len(cards))
	}
	for line := range cards {
		if tokens[line] == "" {
			t.Errorf("mapping lacks line %d", line)
		}
	}
	for line, tok := range killedAt {
		if tokens[line] != tok {
			t.Errorf("line %d: token %s before the kill, %s after: tokens must converge", line, tok, tokens[line])
		}
	}
	if tokens[42] != tokens[43] {
		t.Errorf("one card on lines 42 and 43 got tokens %s and %s, want one", tokens[42], tokens[43])
	}
	errs, err := os.ReadFile(out + ".errors")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(errs), "\n"); n != len(importBad) {
		t.Errorf("errors file holds %d lines, want %d:\n%s", n, len(importBad), errs)
	}
	for line, why := range importBad {
		if !strings.Contains(string(errs), fmt.Sprintf(`{"line":%d,`, line)) || !strings.Contains(string(errs), why) {
			t.Errorf("errors file lacks line %d (%s):\n%s", line, why, errs)
		}
	}
	mapping, _ := os.ReadFile(out)
	for _, line := range []int{1, 42, 999, 50_000, importCards} {
		if strings.Contains(string(mapping)+string(errs)+stderr, cards[line]) {
			t.Errorf("the card of line %d is in the mapping, the errors file or stderr", line)
		}
	}
	if code, _, stderr := tok(t, dir, "", args...); code != 1 || !strings.Contains(stderr, "exists") {
		t.Errorf("import into a finished mapping = %d %q, want 1 and a refusal", code, stderr)
	}

	// A CSV file of some of the same cards gets the same tokens.
	csv := "card_number,ID\n" + fmt.Sprintf("\"%s\",\"csv,1\"\n%s,csv2\n", cards[2], cards[50_001])
	csvIn := writeFile(t, dir, "cards.csv", csv)
	if code, stdout, stderr := tok(t, dir, "", "import", "-config", cfg, "-in", csvIn, "-out", filepath.Join(dir, "csv.jsonl")); code != 0 {
		t.Fatalf("CSV import = %d\n%s%s", code, stdout, stderr)
	}
	csvOut, _ := os.ReadFile(filepath.Join(dir, "csv.jsonl"))
	for _, want := range []string{
		fmt.Sprintf(`{"id":"csv,1","token":%q,"line":2}`, tokens[2]),
		fmt.Sprintf(`{"id":"csv2","token":%q,"line":3}`, tokens[50_001]),
	} {
		if !strings.Contains(string(csvOut), want) {
			t.Errorf("CSV mapping lacks %s:\n%s", want, csvOut)
		}
	}

	// The running server gives the same tokens and reveals them; import
	// cannot open its bbolt file meanwhile.
	s := startTok(t, dir, cfg)
	cookie := s.login(t, "cih", secret)
	for _, line := range []int{1, 42, 43, 50_000, importCards} {
		if got := s.clientHandle(t, cookie, cards[line]); got != tokens[line] {
			t.Errorf("line %d: /handle (auth) gives %s, import gave %s", line, got, tokens[line])
		}
	}
	if status, pan := s.reveal(t, cookie, tokens[50_000]); status != 200 || pan != cards[50_000] {
		t.Errorf("/@me of an imported token = %d, PAN matches: %v", status, pan == cards[50_000])
	}
	code, _, stderr = tok(t, dir, "", "import", "-config", cfg, "-in", csvIn, "-out", filepath.Join(dir, "beside.jsonl"), "-audit", filepath.Join(dir, "beside.log"))
	if code != 1 || !strings.Contains(stderr, "stop tok serve") {
		t.Errorf("import beside tok serve on bbolt = %d %q, want 1 and the advice to stop it", code, stderr)
	}
	s.stop(t)

	// Export, and open it with the recipient's key.
	exp, opened := exportVault(t, dir, cfg)
	distinct := map[string]bool{}
	for _, c := range cards {
		distinct[c] = true
	}
	if len(opened) != len(distinct) {
		t.Errorf("export holds %d records, want %d (the distinct cards imported)", len(opened), len(distinct))
	}
	for line, card := range cards {
		if opened[tokens[line]] != card {
			t.Fatalf("export: token of line %d does not open to its card", line)
		}
	}
	raw, _ := os.ReadFile(exp)
	if strings.Contains(string(raw), cards[1]) {
		t.Error("the export holds a card number in clear")
	}

	code, stdout, _ = tok(t, dir, "", "audit", "verify", "-keyring", keyring, filepath.Join(dir, "audit.log"))
	if code != 0 {
		t.Errorf("audit verify = %d %s", code, stdout)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	for _, want := range []string{`"event":"import"`, `"outcome":"bad_lines"`, fmt.Sprintf(`"file":%q`, in), `"event":"export"`, `"recipient":"sha256:`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// openExport opens a tok export file with the recipient's private key
// (PEM) and returns token → card.
// exportVault makes a recipient key pair in dir, runs tok export of cfg's
// vault to it (with extra flags) and returns the export file and what it
// opens to with the recipient's private key (token → card).
func exportVault(t *testing.T, dir, cfg string, extra ...string) (exp string, opened map[string]string) {
	t.Helper()
	if code, _, stderr := tok(t, dir, "", "export", "keygen", "-o", "rcpt"); code != 0 {
		t.Fatalf("export keygen = %d %s", code, stderr)
	}
	exp = filepath.Join(dir, "export.jsonl")
	args := append([]string{"export", "-config", cfg, "-recipient", "rcpt.pub", "-out", exp}, extra...)
	if code, stdout, stderr := tok(t, dir, "", args...); code != 0 {
		t.Fatalf("tok %s = %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return exp, openExport(t, filepath.Join(dir, "rcpt.key"), exp)
}

func openExport(t *testing.T, keyPath, path string) map[string]string {
	t.Helper()
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(kb)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := hpke.NewDHKEMPrivateKey(k.(*ecdh.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	var head struct {
		TokExport int    `json:"tok_export"`
		Info      string `json:"info"`
		SealedKey string `json:"sealed_key"`
	}
	if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.TokExport != 1 {
		t.Fatalf("export header %q: %v", sc.Text(), err)
	}
	sealedKey, _ := base64.StdEncoding.DecodeString(head.SealedKey)
	dataKey, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(head.Info), sealedKey)
	if err != nil {
		t.Fatalf("open the data key: %v", err)
	}
	block, _ := aes.NewCipher(dataKey)
	aead, _ := cipher.NewGCM(block)
	cards := map[string]string{}
	ended := false
	for sc.Scan() {
		var rec struct {
			Token, Sealed string
			End           bool
			Records       int
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.End {
			ended = rec.Records == len(cards)
			break
		}
		sealed, _ := base64.StdEncoding.DecodeString(rec.Sealed)
		card, err := aead.Open(nil, sealed[:12], sealed[12:], []byte(head.Info+" "+rec.Token))
		if err != nil {
			t.Fatalf("record %s does not open: %v", rec.Token, err)
		}
		cards[rec.Token] = string(card)
	}
	if !ended {
		t.Error("the export has no trailer counting its records")
	}
	return cards
}

// TestImportPostgresBesideServe: on a PostgreSQL vault tok import and tok
// export run beside a serving tok, with an audit log of their own (the
// server holds its own), and the server gives the imported tokens.
func TestImportPostgresBesideServe(t *testing.T) {
	pg := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pg == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
	}
	url := pgSchema(t, pg, "tok_import_")
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg, secret := revealConfig(t, dir, keyring, "")
	b, _ := os.ReadFile(cfg)
	writeFile(t, dir, "tok.yaml", strings.Replace(string(b), fmt.Sprintf("bolt: %q", filepath.Join(dir, "tok.db")), fmt.Sprintf("postgres: %q", url), 1))
	s := startTok(t, dir, cfg)

	cards := []string{luhnComplete("411111000000001"), luhnComplete("555555000000002"), luhnComplete("411111000000001")}
	in := writeFile(t, dir, "cards.csv", "number,id\n"+cards[0]+",cust_2\n"+cards[1]+",cust_3\n"+cards[2]+",cust_4\n")
	out := filepath.Join(dir, "map.jsonl")
	args := []string{"import", "-config", cfg, "-in", in, "-out", out}
	if code, _, stderr := tok(t, dir, "", args...); code != 1 || !strings.Contains(stderr, "-audit FILE") {
		t.Errorf("import sharing the server's audit log = %d %q, want 1 and the advice to pass -audit", code, stderr)
	}
	if code, stdout, stderr := tok(t, dir, "", append(args, "-audit", filepath.Join(dir, "import-audit.log"))...); code != 0 {
		t.Fatalf("import beside tok serve on PostgreSQL = %d\n%s%s", code, stdout, stderr)
	}
	tokens := readMapping(t, out, -1)
	if len(tokens) != 3 || tokens[2] != tokens[4] {
		t.Fatalf("mapping %v: want 3 lines, lines 2 and 4 (one card) with one token", tokens)
	}
	cookie := s.login(t, "cih", secret)
	for line, card := range map[int]string{2: cards[0], 3: cards[1]} {
		if got := s.clientHandle(t, cookie, card); got != tokens[line] {
			t.Errorf("line %d: /handle (auth) gives %s, import gave %s", line, got, tokens[line])
		}
	}
	// beside tok serve on PostgreSQL
	_, opened := exportVault(t, dir, cfg, "-audit", filepath.Join(dir, "export-audit.log"))
	if len(opened) != 2 || opened[tokens[2]] != cards[0] || opened[tokens[3]] != cards[1] {
		t.Errorf("export opened to %d records; want the 2 cards under their tokens", len(opened))
	}
	s.stop(t)
}
