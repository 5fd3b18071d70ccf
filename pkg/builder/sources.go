package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fairing-dev/fairing/pkg/layer"
)

// LocalSources makes the sources of a context folder that lands at workdir in the image,
// honouring ignoreFile (default DIR/.dockerignore, which may be missing).
func LocalSources(dir, ignoreFile, workdir string) ([]layer.Source, error) {
	fi, err := os.Stat(dir)
	switch {
	case os.IsNotExist(err):
		return nil, fmt.Errorf("context %s does not exist: give the folder to build with --context", dir)
	case err != nil:
		return nil, fmt.Errorf("context %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("context %s is a file, not a folder: give the folder that holds it with --context", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read context %s: %w (fix its permissions)", dir, errors.Unwrap(err))
	}
	f.Close()
	if ignoreFile == "" {
		ignoreFile = filepath.Join(dir, ".dockerignore")
	} else if _, err := os.Stat(ignoreFile); err != nil {
		return nil, fmt.Errorf("--dockerignore: %w", err)
	}
	ign, err := layer.ReadIgnoreFile(ignoreFile)
	if err != nil {
		return nil, err
	}
	return []layer.Source{{Dest: workdir, Path: dir, Ignore: ign}}, nil
}
