// Package notebook reads Jupyter notebooks (nbformat v4 JSON) and converts them into plain Python
// scripts that run under `python` without IPython: code cells are kept, markdown becomes comments,
// and IPython-only syntax (magics, shell escapes, get_ipython() calls, help syntax) is commented out.
package notebook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Cell types in nbformat v4.
const (
	CellCode     = "code"
	CellMarkdown = "markdown"
	CellRaw      = "raw"
)

// Notebook is the part of an nbformat v4 document the converters need.
type Notebook struct {
	NBFormat      int
	NBFormatMinor int
	// Language is the kernel language from metadata.kernelspec.language or
	// metadata.language_info.name ("" when the notebook does not say).
	Language string
	Cells    []Cell
}

// Cell is one notebook cell with its source joined into a single string.
type Cell struct {
	Type   string
	Source string
	// Tags are the cell's metadata.tags.
	Tags []string
	// RawFormat is a raw cell's target MIME type (metadata.format or metadata.raw_mimetype).
	RawFormat string
}

type rawNotebook struct {
	NBFormat      *int              `json:"nbformat"`
	NBFormatMinor int               `json:"nbformat_minor"`
	Cells         []json.RawMessage `json:"cells"`
	Worksheets    json.RawMessage   `json:"worksheets"`
	Metadata      struct {
		Kernelspec struct {
			Language string `json:"language"`
		} `json:"kernelspec"`
		LanguageInfo struct {
			Name string `json:"name"`
		} `json:"language_info"`
	} `json:"metadata"`
}

type rawCell struct {
	CellType *string         `json:"cell_type"`
	Source   json.RawMessage `json:"source"`
	Metadata struct {
		Tags        []string `json:"tags"`
		Format      string   `json:"format"`
		RawMimetype string   `json:"raw_mimetype"`
	} `json:"metadata"`
}

// Parse decodes an nbformat v4 notebook. Errors say what is wrong and, for JSON syntax errors,
// where (line:column); the caller adds the file name.
func Parse(data []byte) (*Notebook, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file: a Jupyter notebook is a JSON document")
	}
	var top json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonError(data, err)
	}
	if t := bytes.TrimSpace(top); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a Jupyter notebook: the JSON document is not an object")
	}
	var raw rawNotebook
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, jsonError(data, err)
	}
	if raw.NBFormat == nil {
		return nil, errors.New(`not a Jupyter notebook: no "nbformat" field`)
	}
	switch v := *raw.NBFormat; {
	case v < 4:
		return nil, fmt.Errorf("nbformat %d is not supported (only nbformat 4): upgrade it with "+
			"`jupyter nbconvert --to notebook --nbformat 4 --inplace FILE` or open and save it in a current Jupyter", v)
	case v > 4:
		return nil, fmt.Errorf("nbformat %d is not supported (only nbformat 4)", v)
	}
	if raw.Cells == nil {
		if raw.Worksheets != nil {
			return nil, errors.New(`no "cells" list but a "worksheets" list, as in nbformat 3: ` +
				"the file is mislabelled; re-save it with a current Jupyter")
		}
		return nil, errors.New(`no "cells" list: an nbformat 4 notebook keeps its cells in a top-level "cells" array`)
	}
	nb := &Notebook{
		NBFormat:      *raw.NBFormat,
		NBFormatMinor: raw.NBFormatMinor,
		Language:      raw.Metadata.Kernelspec.Language,
		Cells:         make([]Cell, 0, len(raw.Cells)),
	}
	if nb.Language == "" {
		nb.Language = raw.Metadata.LanguageInfo.Name
	}
	for i, rc := range raw.Cells {
		c, err := parseCell(rc)
		if err != nil {
			return nil, fmt.Errorf("cell %d: %w", i+1, err)
		}
		nb.Cells = append(nb.Cells, c)
	}
	return nb, nil
}

func parseCell(data json.RawMessage) (Cell, error) {
	var rc rawCell
	if err := json.Unmarshal(data, &rc); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "" {
			return Cell{}, fmt.Errorf("not a JSON object (found %s)", ute.Value)
		}
		return Cell{}, fmt.Errorf("malformed cell: %w", err)
	}
	if rc.CellType == nil {
		return Cell{}, errors.New(`no "cell_type"`)
	}
	switch *rc.CellType {
	case CellCode, CellMarkdown, CellRaw:
	default:
		return Cell{}, fmt.Errorf("unknown cell_type %q (want code, markdown or raw)", *rc.CellType)
	}
	src, err := joinSource(rc.Source)
	if err != nil {
		return Cell{}, err
	}
	c := Cell{Type: *rc.CellType, Source: src, Tags: rc.Metadata.Tags, RawFormat: rc.Metadata.Format}
	if c.RawFormat == "" {
		c.RawFormat = rc.Metadata.RawMimetype
	}
	return c, nil
}

// joinSource accepts nbformat's two spellings of a multi-line string: a string, or a list of
// strings that are concatenated as they are (each element normally ends with "\n").
func joinSource(data json.RawMessage) (string, error) {
	d := bytes.TrimSpace(data)
	if len(d) == 0 || bytes.Equal(d, []byte("null")) {
		return "", errors.New(`no "source"`)
	}
	if d[0] == '"' {
		var s string
		if err := json.Unmarshal(d, &s); err != nil {
			return "", fmt.Errorf(`"source": %w`, err)
		}
		return s, nil
	}
	var parts []string
	if err := json.Unmarshal(d, &parts); err != nil {
		return "", errors.New(`"source" must be a string or a list of strings`)
	}
	return strings.Join(parts, ""), nil
}

// jsonError turns encoding/json's byte offsets into line:column, which editors understand.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &ute):
		off = ute.Offset
		if ute.Field != "" {
			return fmt.Errorf("invalid JSON for a notebook: field %q has a %s where a %s is expected (line %s)",
				ute.Field, ute.Value, ute.Type, position(data, off))
		}
	}
	if off < 0 {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return fmt.Errorf("invalid JSON at line %s: %w", position(data, off), err)
}

func position(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return fmt.Sprintf("%d:%d", line, col)
}
