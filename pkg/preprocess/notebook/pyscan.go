package notebook

import "strings"

// pyState is just enough of Python's tokenizer to know where a logical line ends: whether we
// are inside a string (and which), how deep in brackets, and whether a backslash continues the
// line. IPython syntax is only recognised at the start of a logical line, so a "!" or "%" inside a
// triple-quoted string or a bracketed expression is left alone.
type pyState struct {
	quote  byte // 0, '\'' or '"'
	triple bool
	depth  int
	cont   bool
}

func (s pyState) clean() bool { return s.quote == 0 && s.depth == 0 && !s.cont }

// scan consumes one physical line (without its newline) and returns the line's code with string
// contents blanked and any comment dropped, so callers can look for names and trailing "?" safely.
func (s *pyState) scan(line string) string {
	var code strings.Builder
	s.cont = false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if s.quote != 0 {
			switch {
			case c == '\\':
				if i == len(line)-1 {
					// A backslash at the end of a line inside a string continues the string.
					s.cont = true
				}
				i++
			case c == s.quote && (!s.triple || strings.HasPrefix(line[i:], strings.Repeat(string(c), 3))):
				if s.triple {
					i += 2
				}
				s.quote, s.triple = 0, false
				code.WriteByte(c)
			}
			continue
		}
		switch c {
		case '#':
			return code.String()
		case '\'', '"':
			s.quote = c
			s.triple = strings.HasPrefix(line[i:], strings.Repeat(string(c), 3))
			if s.triple {
				i += 2
			}
			code.WriteByte(c)
			continue
		case '(', '[', '{':
			s.depth++
		case ')', ']', '}':
			if s.depth > 0 {
				s.depth--
			}
		case '\\':
			if i == len(line)-1 {
				s.cont = true
				return code.String()
			}
		}
		code.WriteByte(c)
	}
	// A single-quoted string cannot span lines without a backslash; end it so one broken line
	// does not swallow the rest of the cell.
	if s.quote != 0 && !s.triple && !s.cont {
		s.quote = 0
	}
	return code.String()
}
