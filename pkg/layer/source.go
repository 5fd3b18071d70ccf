// Package layer turns local files into deterministic, content-addressed image layers.
//
// The flow is: Sources (what goes where in the image) → Collect (walk, honour ignore rules,
// refuse what cannot be stored) → Entries → Plan (split by how often things change) →
// Builder (stat cache → content keys → layer cache hit, or deterministic tar → compress once).
//
// The package knows files and bytes only: no registry, no Kubernetes.
package layer

import (
	"io/fs"

	"github.com/moby/patternmatcher"
)

// Class says how often a file is expected to change; it decides which layer a file lands in.
// Lower classes go in lower layers.
type Class uint8

const (
	// ClassAuto lets the planner decide from the file's name and size.
	ClassAuto Class = iota
	// ClassDeps is for dependency manifests (requirements.txt, pyproject.toml, ...).
	ClassDeps
	// ClassLarge is for big files (model weights, datasets): each gets a layer of its own.
	ClassLarge
	// ClassSource is for code and everything else.
	ClassSource
	// ClassTop is for files generated per build (a converted notebook, a function shim):
	// they go in the topmost layer.
	ClassTop
)

// Source maps local content to a place in the image. Exactly one of Path or Data is used.
type Source struct {
	// Dest is the absolute path in the image, e.g. "/app/train.py" or "/app" for a directory.
	Dest string
	// Path is a local file or directory. A directory is walked recursively; symlinks inside it
	// are stored as symlinks and must not point outside it.
	Path string
	// Data is generated content, stored as a regular file at Dest with Mode.
	Data []byte
	// Mode is the permission of a generated file (Data); 0 means 0644.
	Mode fs.FileMode
	// Ignore excludes paths (relative to Path, slash-separated) when walking a directory.
	Ignore *patternmatcher.PatternMatcher
	// Class overrides the planner's choice for everything under this source.
	Class Class
}
