package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tokproxy/tok/vault"
)

// maxImportLine is the longest input line tok import reads; a longer one
// is a bad line (skipped up to its end), never a reason to stop.
const maxImportLine = 64 << 10

// The column and key names tok import reads a card number from (the first
// present is taken; two present on one line is a bad line) and the one it
// reads the external id from.
var (
	cardKeys = []string{"pan", "card", "number", "pan_number", "card_number"}
	idKey    = "id"
)

// inputFormat is how tok import reads its input.
type inputFormat int

const (
	inputJSONL inputFormat = iota // one JSON object a line
	inputCSV                      // a header row naming the columns, then one record a line
)

// inputFormatOf returns the format named by name ("jsonl", "csv"), or, if
// name is empty, the one the file's extension says (.csv: CSV; anything
// else: JSON Lines).
func inputFormatOf(name, path string) (inputFormat, error) {
	switch strings.ToLower(name) {
	case "":
		if strings.HasSuffix(strings.ToLower(path), ".csv") {
			return inputCSV, nil
		}
		return inputJSONL, nil
	case "jsonl", "json":
		return inputJSONL, nil
	case "csv":
		return inputCSV, nil
	}
	return 0, fmt.Errorf("unknown input format %q (want jsonl or csv)", name)
}

// cardLine is one line of the input: its number, where it ends, and what
// it holds. Bad is why the line cannot be imported ("" if it can); it
// never holds the line's card number.
type cardLine struct {
	Line int64  // 1-based
	End  int64  // byte offset just after the line
	ID   string // "" if the line has none
	PAN  string // digits, normalized
	Bad  string
}

// lineReader reads an input file line by line, keeping the byte offset
// exactly, so an import can resume after the last line it committed.
type lineReader struct {
	r      *bufio.Reader
	format inputFormat
	offset int64
	line   int64
	// For CSV: the columns of the card number and of the id (-1: none).
	cardCol, idCol int
	luhn           bool
}

// newLineReader reads r, which starts at offset, whose line is line (the
// number of lines before it). For CSV, header is the header row, read by
// [readCSVHeader].
func newLineReader(r io.Reader, format inputFormat, offset, line int64, header []string, luhn bool) (*lineReader, error) {
	lr := &lineReader{r: bufio.NewReaderSize(r, 1<<20), format: format, offset: offset, line: line, cardCol: -1, idCol: -1, luhn: luhn}
	if format != inputCSV {
		return lr, nil
	}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == idKey:
			lr.idCol = i
		case lr.cardCol < 0 && contains(cardKeys, h):
			lr.cardCol = i
		}
	}
	if lr.cardCol < 0 {
		return nil, fmt.Errorf("the CSV header names no card column (want one of %s)", strings.Join(cardKeys, ", "))
	}
	return lr, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readCSVHeader reads the first non-blank line of r as a CSV header and
// returns its fields and the byte offset and line number after it.
func readCSVHeader(r io.Reader) (header []string, offset, line int64, err error) {
	br := bufio.NewReader(r)
	for {
		b, n, rerr := readLine(br)
		offset += int64(n)
		if n > 0 {
			line++
		}
		if len(bytes.TrimSpace(b)) > 0 {
			fields, perr := splitCSV(b)
			if perr != nil {
				return nil, 0, 0, fmt.Errorf("CSV header (line %d): %w", line, perr)
			}
			return fields, offset, line, nil
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil, 0, 0, errors.New("the CSV file has no header row")
			}
			return nil, 0, 0, rerr
		}
	}
}

// readLine returns the next line without its line ending, and the bytes
// it took in the file. A line longer than maxImportLine is read to its end
// and returned cut to its first maxImportLine+1 bytes. At the end of the
// input it returns io.EOF (with the last line, if unterminated).
func readLine(br *bufio.Reader) (line []byte, n int, err error) {
	for {
		chunk, rerr := br.ReadSlice('\n')
		n += len(chunk)
		if len(line) <= maxImportLine {
			line = append(line, chunk[:min(len(chunk), maxImportLine+1-len(line))]...)
		}
		switch {
		case rerr == nil:
			return trimEOL(line), n, nil
		case errors.Is(rerr, bufio.ErrBufferFull):
			continue
		default:
			return trimEOL(line), n, rerr
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// next returns the next non-blank line, io.EOF at the end of the input.
// A line that cannot be imported comes back with Bad set; only an error
// reading the file is an error.
func (lr *lineReader) next() (cardLine, error) {
	for {
		b, n, err := readLine(lr.r)
		if n == 0 && err != nil {
			return cardLine{}, err
		}
		lr.offset += int64(n)
		lr.line++
		if err != nil && !errors.Is(err, io.EOF) {
			return cardLine{}, err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			if err != nil {
				return cardLine{}, err
			}
			continue
		}
		cl := cardLine{Line: lr.line, End: lr.offset}
		if len(b) > maxImportLine {
			cl.Bad = fmt.Sprintf("line longer than %d bytes", maxImportLine)
			return cl, nil
		}
		var raw string
		if lr.format == inputCSV {
			cl.ID, raw, cl.Bad = lr.csvFields(b)
		} else {
			cl.ID, raw, cl.Bad = jsonFields(b)
		}
		if cl.Bad == "" {
			cl.PAN, cl.Bad = checkCard(raw, lr.luhn)
		}
		return cl, nil
	}
}

// csvFields returns the id and card number of a CSV record.
func (lr *lineReader) csvFields(b []byte) (id, card, bad string) {
	fields, err := splitCSV(b)
	if err != nil {
		return "", "", err.Error()
	}
	if lr.idCol >= 0 && lr.idCol < len(fields) {
		id = fields[lr.idCol]
	}
	if lr.cardCol >= len(fields) {
		return id, "", fmt.Sprintf("%d columns, the card is in column %d", len(fields), lr.cardCol+1)
	}
	return id, fields[lr.cardCol], ""
}

// jsonLine is what tok import reads of a JSON Lines object: the id and
// the card under each of cardKeys, in that order (decoding into a struct
// costs a third of decoding into a map).
type jsonLine struct {
	ID         json.RawMessage `json:"id"`
	PAN        json.RawMessage `json:"pan"`
	Card       json.RawMessage `json:"card"`
	Number     json.RawMessage `json:"number"`
	PANNumber  json.RawMessage `json:"pan_number"`
	CardNumber json.RawMessage `json:"card_number"`
}

// jsonFields returns the id and card number of a JSON Lines object. The
// card may be a string or a JSON number (read from its text, never as a
// float); so may the id.
func jsonFields(b []byte) (id, card, bad string) {
	var obj jsonLine
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", "", "not a JSON object"
	}
	if obj.ID != nil {
		s, ok := jsonScalar(obj.ID)
		if !ok {
			return "", "", "id is not a string or a number"
		}
		id = s
	}
	found := ""
	for i, raw := range []json.RawMessage{obj.PAN, obj.Card, obj.Number, obj.PANNumber, obj.CardNumber} {
		if raw == nil {
			continue
		}
		k := cardKeys[i]
		if found != "" {
			return id, "", fmt.Sprintf("two card fields (%s and %s)", found, k)
		}
		found = k
		s, ok := jsonScalar(raw)
		if !ok {
			return id, "", k + " is not a string or a number"
		}
		card = s
	}
	if found == "" {
		return id, "", "no card field (want one of " + strings.Join(cardKeys, ", ") + ")"
	}
	return id, card, ""
}

// jsonScalar returns a JSON string's value or a JSON number's text.
func jsonScalar(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	if raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' {
		return string(raw), true
	}
	return "", false
}

// checkCard returns the digits of a card number, or why it is not one.
// The reason never holds the value.
func checkCard(raw string, luhn bool) (pan, bad string) {
	d, err := vault.NormalizePAN(strings.TrimSpace(raw))
	if err != nil {
		return "", "not a card number: " + strings.TrimPrefix(err.Error(), vault.ErrInvalidValue.Error()+": ")
	}
	if luhn && !vault.Luhn(d) {
		return "", "not a card number: the Luhn check fails"
	}
	return d, ""
}

// splitCSV splits one CSV record (RFC 4180, on one line: a quoted field
// may hold commas and doubled quotes, not a line break) into its fields.
func splitCSV(b []byte) ([]string, error) {
	var fields []string
	for i := 0; ; {
		if i < len(b) && b[i] == '"' {
			var f []byte
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return nil, errors.New("unterminated quoted field (a CSV record must fit on one line)")
				}
				f = append(f, b[j:j+k]...)
				j += k + 1
				if j < len(b) && b[j] == '"' {
					f = append(f, '"')
					j++
					continue
				}
				break
			}
			if j < len(b) && b[j] != ',' {
				return nil, errors.New("text after a quoted field")
			}
			fields = append(fields, string(f))
			if j >= len(b) {
				return fields, nil
			}
			i = j + 1
			continue
		}
		k := bytes.IndexByte(b[i:], ',')
		if k < 0 {
			fields = append(fields, string(b[i:]))
			return fields, nil
		}
		fields = append(fields, string(b[i:i+k]))
		i += k + 1
	}
}
