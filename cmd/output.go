package cmd

import (
	"encoding/json"
	"io"
)

// writeJSONLine writes v as one NDJSON line.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// printJSON writes one NDJSON record of the given type to stdout: the
// fields of v (a struct or map) plus "type".
func (f *Factory) printJSON(typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return writeJSONLine(f.IO.Out, map[string]any{"type": typ, "data": v})
	}
	m["type"] = typ
	return writeJSONLine(f.IO.Out, m)
}
