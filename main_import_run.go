package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// importCheckpoint is what tok import keeps next to its mapping (the -out
// file with .checkpoint appended) while it runs: every input line before
// Offset has its record durably in the vault and its mapping line (or
// errors line) synced to disk in the first OutBytes (ErrorsBytes) of the
// files. A run that finds one resumes there: it cuts the files back to
// those lengths and reads on from Offset, so the mapping never holds a
// line twice. A finished run removes it.
type importCheckpoint struct {
	Input       string `json:"input"`  // the input file, absolute
	Domain      string `json:"domain"` // the tokens' fingerprint domain (vault.Spec.Domain)
	Offset      int64  `json:"offset"`
	Line        int64  `json:"line"` // the number of the line ending at Offset
	OutBytes    int64  `json:"out_bytes"`
	ErrorsBytes int64  `json:"errors_bytes"`
	Imported    int64  `json:"imported"`
	Created     int64  `json:"created"`
	Bad         int64  `json:"bad"`
}

// importRun is the files of one tok import and where it stands.
type importRun struct {
	cpPath  string
	cp      importCheckpoint // the last one written
	resumed bool
	size    int64 // of the input, for the progress
	header  []string

	in, out, errs *os.File
	outW, errW    *bufio.Writer

	// Where the run stands, ahead of the checkpoint.
	offset, line           int64
	outBytes, errBytes     int64
	imported, created, bad int64
	badShown               int
	errorsPath, inName     string
}

// openImportRun opens the input and the output files: fresh ones (the
// mapping must not exist yet), or, if a checkpoint says an import into
// opts.out was cut short, those files cut back to the checkpoint.
func openImportRun(opts importOptions) (_ *importRun, err error) {
	abs, err := filepath.Abs(opts.in)
	if err != nil {
		return nil, err
	}
	run := &importRun{cpPath: opts.out + ".checkpoint", errorsPath: opts.errorsPath, inName: opts.in}
	defer func() {
		if err != nil {
			run.close()
		}
	}()
	if run.in, err = os.Open(opts.in); err != nil {
		return nil, err
	}
	fi, err := run.in.Stat()
	if err != nil {
		return nil, err
	}
	run.size = fi.Size()
	if opts.format == inputCSV {
		header, off, line, err := readCSVHeader(run.in)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opts.in, err)
		}
		run.header, run.offset, run.line = header, off, line
	}

	b, err := os.ReadFile(run.cpPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return run, run.create(abs, opts)
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, &run.cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s is damaged (%v): remove it and %s to import again from the start", run.cpPath, err, opts.out)
	}
	cp := run.cp
	switch {
	case cp.Input != abs:
		return nil, fmt.Errorf("checkpoint %s is for an import of %s, not %s: finish that one, or choose another -out", run.cpPath, cp.Input, abs)
	case cp.Domain != opts.spec.Domain():
		return nil, fmt.Errorf("checkpoint %s is for tokens of %s, not %s: run with the flags of the import it stopped", run.cpPath, cp.Domain, opts.spec.Domain())
	case cp.Offset > run.size:
		return nil, fmt.Errorf("%s is shorter (%d bytes) than where the import stopped (%d): it is not the file the checkpoint is for", opts.in, run.size, cp.Offset)
	}
	if run.out, err = reopenCut(opts.out, cp.OutBytes); err != nil {
		return nil, err
	}
	if run.errs, err = reopenCut(opts.errorsPath, cp.ErrorsBytes); err != nil {
		return nil, err
	}
	run.resumed = true
	run.offset = max(run.offset, cp.Offset)
	run.line = max(run.line, cp.Line)
	run.outBytes, run.errBytes = cp.OutBytes, cp.ErrorsBytes
	run.imported, run.created, run.bad = cp.Imported, cp.Created, cp.Bad
	run.outW, run.errW = bufio.NewWriterSize(run.out, 1<<20), bufio.NewWriter(run.errs)
	return run, nil
}

// create makes fresh output files and a first checkpoint.
func (run *importRun) create(abs string, opts importOptions) error {
	var err error
	if run.out, err = os.OpenFile(opts.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists, and no checkpoint (%s) says an import into it was cut short: choose another -out, or remove it", opts.out, run.cpPath)
		}
		return err
	}
	if run.errs, err = os.OpenFile(opts.errorsPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
		return err
	}
	run.outW, run.errW = bufio.NewWriterSize(run.out, 1<<20), bufio.NewWriter(run.errs)
	run.cp = importCheckpoint{Input: abs, Domain: opts.spec.Domain()}
	return run.checkpoint()
}

// reopenCut opens path for appending after cutting it to size bytes.
func reopenCut(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < size {
		err = fmt.Errorf("%s holds %d bytes, less than the %d the checkpoint says were synced: it is not the file the import wrote", path, fi.Size(), size)
	}
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("resume: %w", err)
	}
	return f, nil
}

// reader returns a line reader from where the run stands.
func (run *importRun) reader(opts importOptions) (*lineReader, error) {
	if _, err := run.in.Seek(run.offset, io.SeekStart); err != nil {
		return nil, err
	}
	return newLineReader(run.in, opts.format, run.offset, run.line, run.header, opts.luhn)
}

// mapLine and badLine are the lines of the mapping and the errors file.
type mapLine struct {
	ID    string `json:"id,omitempty"`
	Token string `json:"token"`
	Line  int64  `json:"line"`
}

type badLine struct {
	Line  int64  `json:"line"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error"`
}

// write appends the lines of j to the mapping and the errors file, and
// names bad lines on stderr (the first maxStderrBadLines).
func (run *importRun) write(j *importJob, opts importOptions, prog *progress) error {
	buf := make([]byte, 0, 96)
	run.created += int64(j.created)
	for i, l := range j.lines {
		if l.Bad != "" && opts.strict {
			// The checkpoint stays before the line: fixed in place, it is
			// read again by the next run.
			prog.println(fmt.Sprintf("%s:%d: %s", run.inName, l.Line, l.Bad))
			return fmt.Errorf("line %d is bad (-strict): fix it and run the same command again", l.Line)
		}
		if l.Bad != "" {
			b, _ := json.Marshal(badLine{Line: l.Line, ID: l.ID, Error: l.Bad})
			n, err := run.errW.Write(append(b, '\n'))
			run.errBytes += int64(n)
			if err != nil {
				return fmt.Errorf("write %s: %w", run.errorsPath, err)
			}
			run.bad++
			if run.badShown < maxStderrBadLines {
				prog.println(fmt.Sprintf("%s:%d: %s", run.inName, l.Line, l.Bad))
			} else if run.badShown == maxStderrBadLines {
				prog.println(fmt.Sprintf("more bad lines: see %s", run.errorsPath))
			}
			run.badShown++
			run.offset, run.line = l.End, l.Line
			continue
		}
		buf = appendMapLine(buf[:0], l.ID, j.tokens[i], l.Line)
		n, err := run.outW.Write(buf)
		run.outBytes += int64(n)
		if err != nil {
			return fmt.Errorf("write %s: %w", opts.out, err)
		}
		run.imported++
		run.offset, run.line = l.End, l.Line
	}
	return nil
}

// appendMapLine appends the mapping line {"id":...,"token":...,"line":N}.
func appendMapLine(b []byte, id, token string, line int64) []byte {
	b = append(b, '{')
	if id != "" {
		q, _ := json.Marshal(id)
		b = append(append(append(b, `"id":`...), q...), ',')
	}
	b = append(b, `"token":`...)
	b = strconv.AppendQuote(b, token) // digits, or tok_ and base62
	b = append(b, `,"line":`...)
	b = strconv.AppendInt(b, line, 10)
	return append(b, '}', '\n')
}

// checkpoint syncs what is written and then records where the run stands.
func (run *importRun) checkpoint() error {
	for _, w := range []*bufio.Writer{run.outW, run.errW} {
		if err := w.Flush(); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	for _, f := range []*os.File{run.out, run.errs} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("checkpoint: sync %s: %w", f.Name(), err)
		}
	}
	cp := run.cp
	cp.Offset, cp.Line, cp.OutBytes, cp.ErrorsBytes = run.offset, run.line, run.outBytes, run.errBytes
	cp.Imported, cp.Created, cp.Bad = run.imported, run.created, run.bad
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := writeFileSync(run.cpPath, append(b, '\n')); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	run.cp = cp
	return nil
}

// writeFileSync replaces path with b atomically and durably: a temporary
// file, synced, renamed over path, the directory synced.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// stats returns the run's counts, those of the runs it resumes included.
func (run *importRun) stats() importStats {
	return importStats{imported: run.imported, created: run.created, bad: run.bad}
}

// finish closes the files of a run that read its whole input and removes
// the checkpoint: the mapping is complete.
func (run *importRun) finish() error {
	for _, f := range []*os.File{run.out, run.errs} {
		if err := f.Close(); err != nil {
			return err
		}
	}
	run.out, run.errs = nil, nil
	if err := os.Remove(run.cpPath); err != nil {
		return err
	}
	return syncDir(filepath.Dir(run.cpPath))
}

// close closes whatever is still open.
func (run *importRun) close() {
	for _, f := range []*os.File{run.in, run.out, run.errs} {
		if f != nil {
			f.Close()
		}
	}
	run.in, run.out, run.errs = nil, nil, nil
}
