package notebook

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/shlex"
)

// DefaultIncludeTag is the marker of the original Fairing's include-cell mode: a cell is kept if
// it carries this tag or a comment containing it ("# fairing:include-cell").
const DefaultIncludeTag = "fairing:include-cell"

// Options controls Convert.
type Options struct {
	// Name is the notebook's file name, written in the script's header. Use a base name: the
	// script must not depend on where the notebook was on the build machine.
	Name string
	// IncludeTag, when set, keeps only the code cells that carry it, as a cell tag
	// (metadata.tags) or in a comment ("# fairing:include-cell"); markdown and raw cells are
	// dropped.
	IncludeTag string
}

// RemovalKind says what sort of IPython-only line was commented out.
type RemovalKind string

// The kinds of lines Convert comments out or rewrites.
const (
	RemovedLineMagic  RemovalKind = "line magic"
	RemovedCellMagic  RemovalKind = "cell magic"
	RemovedShell      RemovalKind = "shell escape"
	RemovedHelp       RemovalKind = "help syntax"
	RemovedGetIPython RemovalKind = "get_ipython() call"
	// RewroteTime is "%time STMT" / "%%time": the statement is kept, the timing is dropped.
	RewroteTime RemovalKind = "%time"
	// RewroteWriteFile is "%%writefile": the cell becomes Python that writes the same file.
	RewroteWriteFile RemovalKind = "%%writefile"
)

// Removal records one IPython-only construct that Convert commented out or rewrote.
type Removal struct {
	Cell int // 1-based index of the cell in the notebook
	Line int // 1-based line in the cell
	Kind RemovalKind
	Text string // the line, without its indentation
}

// Script is the result of Convert.
type Script struct {
	Source  []byte
	Removed []Removal
	// CodeCells is how many code cells made it into the script.
	CodeCells int
}

// ConvertBytes parses an nbformat v4 notebook and converts it (see Convert).
func ConvertBytes(data []byte, opts Options) (*Script, error) {
	nb, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return Convert(nb, opts)
}

// Cell magics whose body is Python that runs in the notebook's namespace: the body is kept.
// %%timeit is not among them: IPython runs its body inside a function, so nothing it assigns
// survives, and a benchmark is not part of the program.
var pythonBodyMagics = map[string]bool{"time": true, "capture": true, "prun": true}

// Convert turns a notebook into a Python script that runs under plain `python`.
//
// Code cells are kept as written, in order, each after a "# %%" marker line (the "percent"
// cell format that VS Code, Spyder and jupytext read). Markdown cells become "#" comments.
// Raw cells are kept as code when their format is Python and become comments otherwise.
// IPython-only syntax is commented out rather than deleted, so the script still shows it:
// line magics, cell magics with their whole body (except %%time, %%capture and %%prun, whose body
// is Python and is kept), shell escapes ("!cmd", indented "!cmd", "x = !cmd"), help syntax
// ("obj?", "?obj") and logical lines calling get_ipython(). An indented removed line becomes
// "pass" so that the block around it stays valid. "%time STMT" keeps STMT; "%%writefile NAME"
// becomes Python that writes the same file. If the code calls display(), a fallback to print is
// defined for bases without IPython. Outputs and execution counts are dropped, so re-running a
// notebook does not change the script.
func Convert(nb *Notebook, opts Options) (*Script, error) {
	if nb == nil {
		return nil, errors.New("no notebook")
	}
	if l := strings.ToLower(nb.Language); l != "" && !strings.HasPrefix(l, "python") && !strings.HasPrefix(l, "ipython") {
		return nil, fmt.Errorf("the notebook's kernel language is %q: only Python notebooks can be converted "+
			"to a script; run it unchanged with the full_notebook preprocessor", nb.Language)
	}
	c := &converter{}
	var body strings.Builder
	for i, cell := range nb.Cells {
		idx := i + 1
		if opts.IncludeTag != "" {
			if cell.Type != CellCode || !hasTag(cell, opts.IncludeTag) {
				continue
			}
		}
		src := strings.ReplaceAll(cell.Source, "\r\n", "\n")
		if strings.TrimSpace(src) == "" {
			continue
		}
		lines := strings.Split(strings.TrimRight(src, "\n"), "\n")
		var marker string
		var out []string
		switch cell.Type {
		case CellCode:
			marker = fmt.Sprintf("# %%%% cell %d", idx)
			out = c.codeCell(idx, lines)
			c.script.CodeCells++
		case CellMarkdown:
			marker = fmt.Sprintf("# %%%% [markdown] cell %d", idx)
			out = commentLines(lines)
		case CellRaw:
			if isPythonFormat(cell.RawFormat) {
				marker = fmt.Sprintf("# %%%% cell %d", idx)
				out = lines
			} else {
				marker = fmt.Sprintf("# %%%% [raw] cell %d", idx)
				out = commentLines(lines)
			}
		}
		body.WriteString("\n" + marker + "\n")
		for _, l := range out {
			body.WriteString(l + "\n")
		}
	}

	var b strings.Builder
	name := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, opts.Name)
	if name == "" {
		name = "a notebook"
	}
	b.WriteString("# Generated by fairing from " + name + ": code cells as written, markdown as comments,\n")
	b.WriteString("# IPython-only lines commented out. Edit the notebook, not this file.\n")
	if c.usesDisplay {
		b.WriteString("\ntry:\n    from IPython.display import display\nexcept ImportError:\n    display = print\n")
	}
	b.WriteString(body.String())
	c.script.Source = []byte(b.String())
	return &c.script, nil
}

type converter struct {
	script      Script
	usesDisplay bool
}

func (c *converter) note(cell, line int, kind RemovalKind, text string) {
	c.script.Removed = append(c.script.Removed, Removal{Cell: cell, Line: line, Kind: kind, Text: strings.TrimSpace(text)})
}

func (c *converter) codeCell(cell int, lines []string) []string {
	first := 0
	for first < len(lines) && strings.TrimSpace(lines[first]) == "" {
		first++
	}
	if first == len(lines) || !strings.HasPrefix(lines[first], "%%") {
		return c.codeLines(cell, 1, lines)
	}
	// A cell magic: IPython hands the whole rest of the cell to the magic.
	header := lines[first]
	name, args := splitMagic(header[2:])
	body := lines[first+1:]
	out := append([]string(nil), lines[:first]...)
	switch {
	case name == "time" || pythonBodyMagics[name]:
		kind := RemovedCellMagic
		if name == "time" {
			kind = RewroteTime
		}
		c.note(cell, first+1, kind, header)
		out = append(out, removedComment("", header))
		return append(out, c.codeLines(cell, first+2, body)...)
	case name == "writefile":
		if w, ok := writeFile(args, body); ok {
			c.note(cell, first+1, RewroteWriteFile, header)
			out = append(out, "# converted by fairing: "+header)
			return append(out, w...)
		}
	}
	c.note(cell, first+1, RemovedCellMagic, header)
	out = append(out, removedComment("", header))
	return append(out, commentLines(body)...)
}

// codeLines walks logical lines; first is the 1-based cell line number of lines[0].
func (c *converter) codeLines(cell, first int, lines []string) []string {
	var out []string
	// opener: the last statement ended with ":", so a removed line right after it is the
	// block's only statement so far and must become "pass". Elsewhere an indented "pass" could
	// be an unexpected indent (IPython accepts "  !cmd" at the top level), so a comment is used.
	opener := false
	remove := func(indent string, ls []string) {
		pass := indent != "" && opener
		out = append(out, removedLines(indent, ls, pass)...)
		if pass {
			opener = false
		}
	}
	for i := 0; i < len(lines); {
		line := lines[i]
		text := strings.TrimLeft(line, " \t")
		indent := line[:len(line)-len(text)]
		if kind := ipythonLine(text); kind != "" {
			// IPython continues a magic or shell line that ends with a backslash.
			j := i + 1
			for j < len(lines) && strings.HasSuffix(lines[j-1], "\\") {
				j++
			}
			if kind == RemovedLineMagic {
				if name, stmt := splitMagic(text[1:]); name == "time" && stmt != "" && j == i+1 {
					// "%time STMT" runs STMT: keep it (it may itself be IPython syntax).
					c.note(cell, first+i, RewroteTime, text)
					out = append(out, indent+"# removed by fairing: %time")
					lines = append(lines[:i:i], append([]string{indent + stmt}, lines[i+1:]...)...)
					continue
				}
			}
			c.note(cell, first+i, kind, text)
			remove(indent, lines[i:j])
			i = j
			continue
		}
		var st pyState
		var code strings.Builder
		j := i
		for j < len(lines) {
			code.WriteString(st.scan(lines[j]))
			code.WriteByte('\n')
			j++
			if st.clean() {
				break
			}
		}
		cs := code.String()
		switch {
		case strings.HasSuffix(strings.TrimSpace(cs), "?"):
			c.note(cell, first+i, RemovedHelp, text)
			remove(indent, lines[i:j])
		case callsName(cs, "get_ipython"):
			c.note(cell, first+i, RemovedGetIPython, text)
			remove(indent, lines[i:j])
		default:
			if callsName(cs, "display") {
				c.usesDisplay = true
			}
			if t := strings.TrimSpace(cs); t != "" {
				opener = strings.HasSuffix(t, ":")
			}
			out = append(out, lines[i:j]...)
		}
		i = j
	}
	return out
}

// ipythonLine classifies the start of a logical line (indentation removed).
func ipythonLine(t string) RemovalKind {
	if t == "" {
		return ""
	}
	switch t[0] {
	case '%':
		return RemovedLineMagic
	case '!':
		return RemovedShell
	case '?':
		return RemovedHelp
	}
	// "x = !cmd", "a, b = %sx ls": no Python statement has "!" or "%" right after "=".
	if k := assignedEscape(t); k != "" {
		return k
	}
	return ""
}

func assignedEscape(t string) RemovalKind {
	i := 0
	for {
		// an identifier, possibly dotted
		start := i
		for i < len(t) && (isIdent(t[i]) || (i > start && t[i] == '.')) {
			i++
		}
		if i == start || (t[start] >= '0' && t[start] <= '9') {
			return ""
		}
		for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
			i++
		}
		if i < len(t) && t[i] == ',' {
			i++
			for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
				i++
			}
			continue
		}
		break
	}
	if i >= len(t) || t[i] != '=' || (i+1 < len(t) && t[i+1] == '=') {
		return ""
	}
	i++
	for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
		i++
	}
	if i < len(t) {
		switch t[i] {
		case '!':
			if i+1 < len(t) && t[i+1] == '=' {
				return ""
			}
			return RemovedShell
		case '%':
			return RemovedLineMagic
		}
	}
	return ""
}

func isIdent(b byte) bool {
	return b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b >= 0x80
}

// callsName reports whether code (strings blanked, comments dropped) calls name as a bare name.
func callsName(code, name string) bool {
	for off := 0; ; {
		i := strings.Index(code[off:], name)
		if i < 0 {
			return false
		}
		i += off
		off = i + len(name)
		if i > 0 && (isIdent(code[i-1]) || code[i-1] == '.') {
			continue
		}
		if prev := strings.TrimRight(code[:i], " \t"); endsWithWord(prev, "def") || endsWithWord(prev, "class") {
			continue // a definition, not a call
		}
		rest := strings.TrimLeft(code[off:], " \t")
		if strings.HasPrefix(rest, "(") {
			return true
		}
	}
}

func endsWithWord(s, w string) bool {
	return strings.HasSuffix(s, w) && (len(s) == len(w) || !isIdent(s[len(s)-len(w)-1]))
}

// splitMagic splits "name args" after the % or %% prefix.
func splitMagic(s string) (name, args string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func removedComment(indent, text string) string {
	return indent + "# removed by fairing: " + strings.TrimLeft(text, " \t")
}

// removedLines comments out one logical line. With pass, its first line becomes "pass" so that
// an "if" or "for" whose only statement was a magic still compiles.
func removedLines(indent string, lines []string, pass bool) []string {
	out := make([]string, 0, len(lines))
	for k, l := range lines {
		t := strings.TrimLeft(l, " \t")
		switch {
		case k > 0:
			out = append(out, strings.TrimRight(indent+"# "+t, " \t"))
		case pass:
			out = append(out, indent+"pass  # removed by fairing: "+t)
		default:
			out = append(out, removedComment(indent, t))
		}
	}
	return out
}

func commentLines(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimRight("# "+l, " \t")
	}
	return out
}

// hasTag: the tag is one of the cell's tags, or appears in a comment ("# fairing:include-cell").
// Only comments count, so that a tag like "train" does not select every cell mentioning train.
func hasTag(c Cell, tag string) bool {
	for _, t := range c.Tags {
		if t == tag {
			return true
		}
	}
	for _, l := range strings.Split(c.Source, "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 && strings.Contains(l[i:], tag) {
			return true
		}
	}
	return false
}

func isPythonFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "text/x-python", "text/python", "python", "application/x-python":
		return true
	}
	return false
}

// writeFile renders "%%writefile [-a|--append] NAME" as Python that writes the same bytes as
// IPython would (the cell body, each line ending in a newline, UTF-8).
func writeFile(args string, body []string) ([]string, bool) {
	words, err := shlex.Split(args)
	if err != nil {
		return nil, false
	}
	mode, name := "w", ""
	for _, w := range words {
		switch {
		case w == "-a" || w == "--append":
			mode = "a"
		case strings.HasPrefix(w, "-") || name != "":
			return nil, false
		default:
			name = w
		}
	}
	if name == "" {
		return nil, false
	}
	out := []string{"with open(" + pyQuote(name) + ", '" + mode + "', encoding='utf-8') as _fairing_file:"}
	if len(body) == 0 {
		return append(out, "    _fairing_file.write('')"), true
	}
	out = append(out, "    _fairing_file.write(")
	for _, l := range body {
		out = append(out, "        "+pyQuote(l+"\n"))
	}
	return append(out, "    )"), true
}

// pyQuote renders s as a single-quoted Python 3 str literal.
func pyQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Not UTF-8 (JSON decoding never yields this): write U+FFFD as the decoder would.
			b.WriteString(`\ufffd`)
			i++
			continue
		}
		i += size
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0xfeff {
				b.WriteString(`\u` + leftPad(strconv.FormatInt(int64(r), 16), 4))
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}
