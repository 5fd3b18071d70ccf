package preprocess

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/google/shlex"
)

// ParseKind checks a --preprocessor value.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Python, Notebook, FullNotebook, Function:
		return k, nil
	}
	return "", fmt.Errorf("unknown preprocessor %q: want python, notebook, full_notebook or function", s)
}

// ParseRunner checks a --notebook-runner value.
func ParseRunner(s string) (Runner, error) {
	switch r := Runner(s); r {
	case Papermill, NBConvert:
		return r, nil
	}
	return "", fmt.Errorf("unknown notebook runner %q: want papermill or nbconvert", s)
}

// ParseOutputMap parses an --output-map value "SRC=DST". It splits at the first "=", so SRC
// cannot contain one (DST can).
func ParseOutputMap(s string) (Mapping, error) {
	src, dst, ok := strings.Cut(s, "=")
	if !ok {
		return Mapping{}, fmt.Errorf("--output-map %q: want SRC=DST, e.g. data/train.csv=/data/train.csv", s)
	}
	src, dst = strings.TrimSpace(src), strings.TrimSpace(dst)
	if src == "" {
		return Mapping{}, fmt.Errorf("--output-map %q: SRC (the local file before \"=\") is empty", s)
	}
	if dst == "" {
		return Mapping{}, fmt.Errorf("--output-map %q: DST (the image path after \"=\") is empty", s)
	}
	return Mapping{Src: src, Dst: dst}, nil
}

// ParseParameter parses a notebook parameter given as "NAME=VALUE" (for CLIs whose flags take
// one value; papermill's own syntax is -p NAME VALUE).
func ParseParameter(s string) (Param, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return Param{}, fmt.Errorf("parameter %q: want NAME=VALUE", s)
	}
	if err := checkIdentifier(name); err != nil {
		return Param{}, fmt.Errorf("parameter %q: %w", s, err)
	}
	return Param{Name: name, Value: value}, nil
}

// ParseFunction splits a --function value "FILE.py:NAME". NAME is a Python identifier, or a
// dotted path to an attribute ("Trainer", "models.train"). The last ":" separates, so a
// Windows-style "C:\x.py:f" still parses.
func ParseFunction(s string) (file, name string, err error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", fmt.Errorf("--function %q: want FILE.py:NAME, e.g. train.py:train", s)
	}
	file, name = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
	if file == "" {
		return "", "", fmt.Errorf("--function %q: the file before \":\" is empty", s)
	}
	if !strings.HasSuffix(file, ".py") {
		return "", "", fmt.Errorf("--function %q: %s is not a .py file (a pickled function goes in --pickled-function)", s, file)
	}
	if name == "" {
		return "", "", fmt.Errorf("--function %q: the name after \":\" is empty", s)
	}
	for _, part := range strings.Split(name, ".") {
		if err := checkIdentifier(part); err != nil {
			return "", "", fmt.Errorf("--function %q: %w", s, err)
		}
	}
	return file, name, nil
}

// ParseCommand splits a --command value with shell quoting rules: `python -u`,
// `"/opt/my python/bin/python" -X dev`.
func ParseCommand(s string) ([]string, error) {
	argv, err := shlex.Split(s)
	if err != nil {
		return nil, fmt.Errorf("--command %q: %w", s, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("--command %q: empty", s)
	}
	return argv, nil
}

var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`)

// ParsePythonVersion checks a --python-version value and returns its MAJOR.MINOR.
func ParsePythonVersion(s string) (string, error) {
	if !versionRE.MatchString(s) {
		return "", fmt.Errorf("--python-version %q: want MAJOR.MINOR, e.g. 3.11", s)
	}
	parts := strings.SplitN(s, ".", 3)
	return parts[0] + "." + parts[1], nil
}

func checkIdentifier(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	for i, r := range s {
		if r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r)) {
			continue
		}
		return fmt.Errorf("%q is not a Python identifier", s)
	}
	if pythonKeywords[s] {
		return fmt.Errorf("%q is a Python keyword", s)
	}
	return nil
}

var pythonKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "async": true,
	"await": true, "break": true, "class": true, "continue": true, "def": true, "del": true, "elif": true,
	"else": true, "except": true, "finally": true, "for": true, "from": true, "global": true, "if": true,
	"import": true, "in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true,
	"pass": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}
