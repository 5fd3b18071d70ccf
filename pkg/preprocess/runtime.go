package preprocess

import (
	"embed"
	"path"
)

// The Python files fairing adds to images. They are Python, kept as files so that they can be
// read, linted and tested as such.
//
//go:embed runtime/function_shim.py runtime/python/_fairing_stub.py runtime/python/fairing/__init__.py runtime/python/kubeflow/fairing/__init__.py
var runtimeFS embed.FS

type genFile struct {
	rel  string // relative to the runtime directory
	data []byte
}

// stubFiles are the fairing / kubeflow.fairing SDK stand-ins, under <runtime>/python (which is
// put on PYTHONPATH). kubeflow/ gets no __init__.py so that it stays a namespace package.
func stubFiles() []genFile {
	var out []genFile
	for _, rel := range []string{"python/_fairing_stub.py", "python/fairing/__init__.py", "python/kubeflow/fairing/__init__.py"} {
		out = append(out, genFile{rel: rel, data: mustRead(path.Join("runtime", rel))})
	}
	return out
}

// shimFile is the function shim, at <runtime>/function_shim.py.
func shimFile() genFile {
	return genFile{rel: "function_shim.py", data: mustRead("runtime/function_shim.py")}
}

func mustRead(name string) []byte {
	b, err := runtimeFS.ReadFile(name)
	if err != nil {
		panic("preprocess: embedded file missing: " + name) // a build defect, caught by every test
	}
	return b
}
