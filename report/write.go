package report

import (
	"encoding/json"
	"io"
	"os"
)

// WriteJSON writes r as JSON (the document of --report-json), compact:
// a report holds a run of pages per resident stretch of every snapshot,
// tens of thousands for a fragmented heap, and indenting them doubled the
// time the write took at the end of the run.
func (r *Report) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// WriteFile writes r to path with write (WriteJSON or WriteHTML),
// replacing the file.
func (r *Report) WriteFile(path string, write func(*Report, io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(r, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
