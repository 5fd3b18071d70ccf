//go:build !linux

package layer

import (
	"context"

	"github.com/moby/patternmatcher"
)

func walkDir(ctx context.Context, entries []Entry, root, dest string, ign *patternmatcher.PatternMatcher, class Class) ([]Entry, error) {
	return walkDirPortable(ctx, entries, root, dest, ign, class)
}
