package gen

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Words that identifiers, comments and docstrings are made of: the vocabulary of an ML code
// base. Identifiers are combinations of them, so the text repeats the way real code does.
var words = strings.Fields(`
data model train loss batch config layer weight input output size index path file name value
result tensor grad step epoch optimizer scheduler device cache token embed hidden dim head mask
score label metric eval test valid split shape dtype param state dict list item key count total
mean std norm scale bias kernel stride pad pool conv linear dense drop rate learning warmup decay
logger level start end begin stop offset length width height channel feature sample target
predict prob logit attention query block module network encoder decoder source buffer queue
worker thread process pipeline transform augment image text audio video frame window sequence
vocab tokenizer padding checkpoint save load restore export import format parse read write open
close flush update reset init build create make get set add remove apply run call handle check
validate compute process filter map reduce merge sort group join collect summary report record
event callback hook trainer runner context manager session client server request response url
host port timeout retry error warning message status code flag option args kwargs default min
max sum avg local global rank world node gpu cpu memory seed random shuffle dataset loader
iterator generator field column row table frame series array matrix vector scalar float int
`)

// English words for comments and docstrings.
var prose = strings.Fields(`
the a an of to in for on with by from is are be this that it as at or and not if we can when
which will should must may use used returns return value given each all any into over only
then else also new old first last next same other than more most less such so but because
before after during while until note todo fixme see example default optional required list of
number string boolean object instance class function method argument parameter attribute
compute the loss for a batch of inputs and update the model weights using the optimizer
`)

var keywordsStmt = []string{"if", "if", "while", "for", "with", "try"}

var libs = []string{"os", "sys", "re", "json", "math", "time", "logging", "typing", "functools",
	"itertools", "collections", "dataclasses", "pathlib", "argparse", "numpy as np",
	"torch", "torch.nn as nn", "torch.nn.functional as F", "pandas as pd", "yaml", "random"}

// codeGen writes Python-looking source: imports, constants, classes with methods, functions
// with nested blocks, calls, comments and docstrings. Identifiers follow a Zipf law over a
// project vocabulary plus a small file-local one, which gives code's typical gzip ratio
// (about 0.25 at level 6, 0.3 at level 1).
type codeGen struct {
	r      *rand.Rand
	vocab  []string // project identifiers, snake_case
	zipf   *rand.Zipf
	local  []string // this file's own names
	idioms []string // whole lines the project repeats (boilerplate, common calls)
	izipf  *rand.Zipf
	b      []byte
	indent int
}

// project is what a code base shares across its files.
type project struct {
	vocab  []string
	idioms []string
	header string // license header most files start with
}

func newProject(seed uint64) *project {
	r := rand.New(rand.NewPCG(seed, 0))
	p := &project{vocab: newVocab(r, 3000)}
	g := newCodeGen(r, p)
	for i := 0; i < 400; i++ {
		g.b = g.b[:0]
		g.stmt(3) // depth 3: a simple statement on one line
		p.idioms = append(p.idioms, strings.TrimSpace(string(g.b)))
	}
	var h strings.Builder
	h.WriteString("# Copyright 2024 The " + camel(p.vocab[0]) + " Authors. All rights reserved.\n#\n")
	for _, l := range []string{
		`Licensed under the Apache License, Version 2.0 (the "License");`,
		"you may not use this file except in compliance with the License.",
		"You may obtain a copy of the License at",
		"",
		"    http://www.apache.org/licenses/LICENSE-2.0",
		"",
		"Unless required by applicable law or agreed to in writing, software",
		`distributed under the License is distributed on an "AS IS" BASIS,`,
		"WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.",
		"See the License for the specific language governing permissions and",
		"limitations under the License.",
	} {
		h.WriteString(strings.TrimRight("# "+l, " ") + "\n")
	}
	p.header = h.String()
	return p
}

func newVocab(r *rand.Rand, n int) []string {
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		k := 1 + r.IntN(3)
		parts := make([]string, k)
		for i := range parts {
			parts[i] = words[r.IntN(len(words))]
		}
		s := strings.Join(parts, "_")
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func newCodeGen(r *rand.Rand, p *project) *codeGen {
	vocab := p.vocab
	g := &codeGen{r: r, vocab: vocab, zipf: rand.NewZipf(r, 1.3, 2, uint64(len(vocab)-1)), idioms: p.idioms}
	if len(p.idioms) > 1 {
		g.izipf = rand.NewZipf(r, 1.2, 1, uint64(len(p.idioms)-1))
	}
	g.local = make([]string, 12+r.IntN(20))
	for i := range g.local {
		g.local[i] = vocab[r.IntN(len(vocab))]
	}
	return g
}

func (g *codeGen) ident() string {
	if g.r.IntN(3) == 0 {
		return g.local[g.r.IntN(len(g.local))]
	}
	return g.vocab[g.zipf.Uint64()]
}

func camel(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(s, "_") {
		if p != "" {
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

func (g *codeGen) line(parts ...string) {
	for i := 0; i < g.indent; i++ {
		g.b = append(g.b, "    "...)
	}
	for _, p := range parts {
		g.b = append(g.b, p...)
	}
	g.b = append(g.b, '\n')
}

func (g *codeGen) sentence(n int) string {
	ws := make([]string, n)
	for i := range ws {
		if g.r.IntN(5) == 0 {
			ws[i] = g.ident()
		} else {
			ws[i] = prose[g.r.IntN(len(prose))]
		}
	}
	return strings.Join(ws, " ")
}

func (g *codeGen) number() string {
	switch g.r.IntN(4) {
	case 0:
		return strconv.Itoa(g.r.IntN(10))
	case 1:
		return strconv.Itoa(g.r.IntN(4096))
	case 2:
		return strconv.FormatFloat(float64(g.r.IntN(1000))/1000, 'g', -1, 64)
	default:
		return "1e-" + strconv.Itoa(1+g.r.IntN(8))
	}
}

func (g *codeGen) atom() string {
	switch g.r.IntN(10) {
	case 0, 1:
		return g.number()
	case 2:
		return `"` + g.ident() + `"`
	case 3:
		return "self." + g.ident()
	case 4:
		return []string{"None", "True", "False"}[g.r.IntN(3)]
	default:
		return g.ident()
	}
}

func (g *codeGen) expr(depth int) string {
	if depth > 2 {
		return g.atom()
	}
	switch g.r.IntN(7) {
	case 0, 1:
		return g.call(depth)
	case 2:
		return g.atom() + " " + []string{"+", "-", "*", "/", "//", "%", "@"}[g.r.IntN(7)] + " " + g.expr(depth+1)
	case 3:
		return g.atom() + "[" + g.atom() + "]"
	case 4:
		return "[" + g.expr(depth+1) + " for " + g.ident() + " in " + g.ident() + "]"
	default:
		return g.atom()
	}
}

func (g *codeGen) call(depth int) string {
	var b strings.Builder
	switch g.r.IntN(4) {
	case 0:
		b.WriteString("self.")
	case 1:
		b.WriteString(g.ident() + ".")
	}
	b.WriteString(g.ident())
	b.WriteByte('(')
	n := g.r.IntN(4)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		if g.r.IntN(3) == 0 {
			b.WriteString(g.ident() + "=")
		}
		b.WriteString(g.expr(depth + 1))
	}
	b.WriteByte(')')
	return b.String()
}

func (g *codeGen) stmt(depth int) {
	switch n := g.r.IntN(20); {
	case n < 5 && g.izipf != nil:
		g.line(g.idioms[g.izipf.Uint64()])
	case n < 8:
		t := g.ident()
		if g.r.IntN(3) == 0 {
			t = "self." + t
		}
		g.line(t, " = ", g.expr(0))
	case n < 10:
		g.line(g.call(0))
	case n < 12:
		g.line("# ", g.sentence(4+g.r.IntN(10)))
	case n < 13:
		g.line("logger.", []string{"debug", "info", "warning"}[g.r.IntN(3)], `("`, g.sentence(3+g.r.IntN(6)), ` %s", `, g.ident(), ")")
	case n < 18 && depth < 3:
		kw := keywordsStmt[g.r.IntN(len(keywordsStmt))]
		switch kw {
		case "for":
			g.line("for ", g.ident(), " in ", g.expr(1), ":")
		case "with":
			g.line("with ", g.call(1), " as ", g.ident(), ":")
		case "try":
			g.line("try:")
		default:
			g.line(kw, " ", g.expr(1), " ", []string{"is not", "==", "<", ">=", "in"}[g.r.IntN(5)], " ", g.atom(), ":")
		}
		g.indent++
		for i, k := 0, 1+g.r.IntN(4); i < k; i++ {
			g.stmt(depth + 1)
		}
		g.indent--
		if kw == "try" {
			g.line("except ", []string{"ValueError", "KeyError", "RuntimeError", "OSError"}[g.r.IntN(4)], " as err:")
			g.indent++
			g.line("raise ", camel(g.ident()), `Error(f"`, g.sentence(4), ` {err}") from err`)
			g.indent--
		}
	default:
		g.line("return ", g.expr(0))
	}
}

func (g *codeGen) params(self bool) string {
	var ps []string
	if self {
		ps = append(ps, "self")
	}
	for i, n := 0, g.r.IntN(5); i < n; i++ {
		p := g.ident()
		if g.r.IntN(3) == 0 {
			p += "=" + g.atom()
		}
		ps = append(ps, p)
	}
	return strings.Join(ps, ", ")
}

func (g *codeGen) function(method bool) {
	g.line()
	name := g.ident()
	if method && g.r.IntN(6) == 0 {
		name = "__init__"
	}
	g.line("def ", name, "(", g.params(method), "):")
	g.indent++
	if g.r.IntN(2) == 0 {
		doc := g.sentence(6 + g.r.IntN(12))
		g.line(`"""`, strings.ToUpper(doc[:1]), doc[1:], `."""`)
	}
	for i, k := 0, 2+g.r.IntN(10); i < k; i++ {
		g.stmt(0)
	}
	g.indent--
}

func (g *codeGen) class() {
	g.line()
	g.line()
	g.line("class ", camel(g.ident()), "(", camel(g.ident()), "):")
	g.indent++
	g.line(`"""`, g.sentence(8+g.r.IntN(16)), `."""`)
	for i, k := 0, 1+g.r.IntN(6); i < k; i++ {
		g.function(true)
	}
	g.indent--
}

// python returns a Python module of exactly size bytes.
func (g *codeGen) python(size int, header string) []byte {
	g.b = make([]byte, 0, size+4096)
	g.b = append(g.b, header...)
	g.line(`"""`, g.sentence(6+g.r.IntN(10)), `."""`)
	g.line()
	for i, k := 0, 2+g.r.IntN(8); i < k; i++ {
		lib := libs[g.r.IntN(len(libs))]
		if g.r.IntN(3) == 0 {
			g.line("from .", g.ident(), " import ", camel(g.ident()), ", ", g.ident())
		} else {
			g.line("import ", lib)
		}
	}
	g.line()
	g.line("logger = logging.getLogger(__name__)")
	for i, k := 0, g.r.IntN(4); i < k; i++ {
		g.line(strings.ToUpper(g.ident()), " = ", g.number())
	}
	for len(g.b) < size {
		if g.r.IntN(3) == 0 {
			g.class()
		} else {
			g.line()
			g.function(false)
		}
	}
	return fit(g.b, size)
}

// yaml returns a configuration file of exactly size bytes.
func (g *codeGen) yaml(size int) []byte {
	g.b = make([]byte, 0, size+1024)
	for len(g.b) < size {
		g.indent = 0
		g.line(g.ident(), ":")
		g.indent = 1
		for i, k := 0, 2+g.r.IntN(8); i < k; i++ {
			g.line(g.ident(), ": ", g.atom())
		}
	}
	g.indent = 0
	return fit(g.b, size)
}

// markdown returns documentation prose of exactly size bytes.
func (g *codeGen) markdown(size int) []byte {
	g.b = make([]byte, 0, size+1024)
	g.line("# ", camel(g.ident()))
	for len(g.b) < size {
		g.line()
		if g.r.IntN(4) == 0 {
			g.line("## ", g.sentence(3))
			g.line()
		}
		g.line(g.sentence(20+g.r.IntN(40)), ".")
		if g.r.IntN(3) == 0 {
			g.line()
			g.line("```python")
			g.line(g.ident(), " = ", g.call(0))
			g.line("```")
		}
	}
	return fit(g.b, size)
}

// fit cuts b to exactly size bytes, ending in a newline.
func fit(b []byte, size int) []byte {
	if size == 0 {
		return b[:0]
	}
	b = b[:size]
	b[size-1] = '\n'
	return b
}
